"""Schemathesis hooks for tests/schemathesis.sh.

They keep generated requests from turning documented, deliberate behaviour into noise, and
change nothing else:

- waits are capped (`GET /messages?wait_ms=`, `POST /delay`), so a schema-valid long poll or
  delay does not read as a hang;
- `POST /fault` sets the error rate to 0, so the secondary's documented injected 500s (which
  would follow) are not reported as server errors;
- `POST /message` asks for at most ALL nodes (`REPLOG_FUZZ_ALL`; the document cannot know the
  cluster size) and waits at least 5 s, so a schema-valid append is not a 400 or a 504 only
  because of the cluster it met.
"""

import os

import schemathesis

ALL = int(os.environ.get("REPLOG_FUZZ_ALL", "2"))


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v):
    # As in JSON Schema, 3.0 is an integer.
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool)


@schemathesis.hook
def map_case(ctx, case):
    op = case.operation
    path, method = op.path, op.method.upper()
    if path == "/messages" and isinstance(case.query, dict):
        w = case.query.get("wait_ms")
        if _int(w) and 200 < w <= 600_000:
            case.query["wait_ms"] = 200
    if path == "/delay" and isinstance(case.body, dict):
        v = case.body.get("value")
        if _number(v) and 0.2 < v <= 86_400:
            case.body["value"] = 0.2
    if path == "/fault" and method == "POST" and isinstance(case.body, dict):
        v = case.body.get("error_rate")
        if _number(v) and 0 <= v <= 1:
            case.body["error_rate"] = 0.0
    if path == "/message" and method == "POST" and isinstance(case.body, dict):
        w = case.body.get("write_concern")
        if _int(w) and ALL < w <= 2**63 - 1:
            case.body["write_concern"] = ALL
        t = case.body.get("timeout_ms")
        if _int(t) and 0 <= t < 5000:
            case.body["timeout_ms"] = 5000
    return case
