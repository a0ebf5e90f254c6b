//! `GET /openapi.json`: a valid OpenAPI 3.1 document (parsed by the `oas3` crate, every
//! `$ref` resolving), the same on both roles, and listing exactly the routes each role's
//! router has: every (method, path) of the document is probed on a running node of each role
//! and must be routed there exactly when the document says that role serves it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::TestCluster;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// Every `$ref` in `v`, recursively.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(s) = x.as_str()
                {
                    out.push(s.to_string());
                }
                refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Whether node `i` routes `method path`: anything but the router's own 404 (unknown path)
/// and 405 (unknown method) fallbacks counts.
async fn routed(c: &TestCluster, i: usize, method: &str, path: &str) -> bool {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    if (method, path) == ("GET", "/events") {
        // An endless stream: its head tells, its body is never read.
        let r = c.req(m, i, path).send().await.expect("request");
        return r.status() == 200
            && r.headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    }
    let r = c.send(c.req(m, i, path)).await;
    let error = r.json["error"].as_str().unwrap_or("");
    let fallback_404 = r.status == 404 && error.starts_with("no such endpoint");
    let fallback_405 = r.status == 405 && error.ends_with(&format!("is not allowed on {path}"));
    !(fallback_404 || fallback_405)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t84_openapi_json_is_valid_openapi_3_and_lists_every_route_of_both_roles() {
    // Arrange: fault injection off on the secondary too, as in a default config file (the
    // test endpoints stay routed and answer 404 themselves).
    let c = TestCluster::builder(1)
        .with(toml::toml! { [fault] enabled = false })
        .start()
        .await;

    // Act
    let master = c.get(0, "/openapi.json").await;
    let secondary = c.get(1, "/openapi.json").await;

    // Assert: JSON, identical on both roles, a valid OpenAPI 3.1 document.
    assert_eq!(master.status, 200);
    assert!(
        master
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"))
    );
    assert_eq!(master.json, secondary.json, "one document for both roles");
    let spec = oas3::from_json(&master.text).expect("parses as OpenAPI 3.1");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!(version.major, 3);
    assert!(!spec.info.title.is_empty() && !spec.info.version.is_empty());
    let mut all_refs = Vec::new();
    refs(&master.json, &mut all_refs);
    assert!(!all_refs.is_empty());
    for r in &all_refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local refs: {r}"));
        assert!(master.json.pointer(pointer).is_some(), "{r} resolves");
    }
    let mut documented = Vec::new();
    for (path, method, op) in spec.operations() {
        let roles: Vec<String> = op
            .extensions
            .get("replog-roles")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{method} {path} has x-replog-roles"))
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect();
        assert!(
            !op.responses(&spec).is_empty(),
            "{method} {path} has responses"
        );
        op.request_body(&spec).expect("request body resolves");
        op.parameters(&spec).expect("parameters resolve");
        documented.push((method.to_string(), path, roles));
    }

    // Every documented operation is routed on exactly the roles it names; every other
    // method on a documented path is not routed.
    let paths: BTreeSet<String> = documented.iter().map(|(_, p, _)| p.clone()).collect();
    for (i, role) in [(0, "master"), (1, "secondary")] {
        for path in &paths {
            for method in METHODS {
                let doc = documented
                    .iter()
                    .find(|(m, p, _)| m == method && p == path)
                    .is_some_and(|(_, _, roles)| roles.iter().any(|r| r == role));
                assert_eq!(
                    routed(&c, i, method, path).await,
                    doc,
                    "{role}: {method} {path} routed exactly when documented"
                );
            }
        }
    }
    // And the routes the router is known to have (SPEC §2–3, /metrics, this document).
    for (m, p) in [
        ("POST", "/message"),
        ("PUT", "/message"),
        ("GET", "/messages"),
        ("GET", "/health"),
        ("GET", "/heartbeat"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/"),
        ("GET", "/events"),
        ("POST", "/replicate"),
        ("GET", "/replicate"),
        ("POST", "/delay"),
        ("GET", "/fault"),
        ("POST", "/fault"),
    ] {
        assert!(routed(&c, 1, m, p).await, "secondary routes {m} {p}");
        assert!(
            documented.iter().any(|(dm, dp, _)| dm == m && dp == p),
            "{m} {p} is documented"
        );
    }
}
