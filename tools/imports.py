#!/usr/bin/env python3
"""How replog's source files import each other: import circles and cross-layer imports.

    python3 tools/imports.py [SRC_DIR]        (default: src/ next to this script's folder)

Reads every `.rs` file under SRC_DIR, finds the crate paths it names (`use crate::…` lines,
grouped `use crate::{a, b::c}`, `super::` paths and inline `crate::x::y` in code, comments
left out) and maps each to the file that defines it. Then prints:

1. **Import circles**: groups of files that import each other, directly or through others
   (strongly connected components of the file graph with more than one file).
2. **Cross-layer imports**: imports that go against the layering of the design
   (docs/architecture.md), by layer:
   - *storage* (the log store and its single writer) imports nothing from replication, the
     HTTP API or metrics;
   - *wire* (protocol.rs: the types peers exchange) imports nothing from storage;
   - *metrics* imports nothing from the HTTP API.
   Layers are recognised by file path, for the layout before and after issue 12, so the same
   command measures both.

Exit status 1 when there is a circle or a cross-layer import, 0 otherwise. Test files
(`*/tests.rs`, `#[cfg(test)] mod tests` blocks) are left out: tests may reach anywhere.
"""

import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
ROOT = os.path.normpath(ROOT)

# Layers, by path relative to src/ (old layout | new layout).
LAYERS = [
    ("storage", re.compile(r"^(log/|writer\.rs$|dedup\.rs$|storage/)")),
    ("replication", re.compile(r"^(acks\.rs|replication/|health\.rs|recovery\.rs|peer\.rs|transport\.rs|master/)")),
    ("api", re.compile(r"^(api/|server\.rs|http/)")),
    ("metrics", re.compile(r"^metrics\.rs$")),
    ("wire", re.compile(r"^protocol\.rs$")),
]
FORBIDDEN = {
    "storage": {"replication", "api", "metrics"},
    "wire": {"storage"},
    "metrics": {"api"},
}


def layer(rel):
    for name, pat in LAYERS:
        if pat.search(rel):
            return name
    return None


def module_of(rel):
    """src-relative file path -> module path tuple (lib.rs/main.rs -> ())."""
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments_and_tests(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    # Drop `#[cfg(test)] mod tests { … }` blocks (brace matching).
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def expand_use(path):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    m = re.match(r"^(.*?)\{(.*)\}$", path.strip())
    if not m:
        return [path.strip()]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = it.strip()
        if it:
            out.extend(expand_use(prefix + it))
    return out


def main():
    files = {}
    for d, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs") and n != "tests.rs":
                rel = os.path.relpath(os.path.join(d, n), ROOT).replace(os.sep, "/")
                files[rel] = module_of(rel)
    by_module = {m: f for f, m in files.items() if f not in ("main.rs",)}

    def resolve(segments):
        """The file defining the longest module prefix of `segments`."""
        for k in range(len(segments), 0, -1):
            f = by_module.get(tuple(segments[:k]))
            if f:
                return f
        return None

    edges = {f: set() for f in files}
    for f, mod in files.items():
        text = strip_comments_and_tests(open(os.path.join(ROOT, f), encoding="utf-8").read())
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(expand_use(m.group(1).replace("\n", " ")))
        paths.extend(re.findall(r"\b((?:crate|super)(?:::\w+)+)", text))
        for p in paths:
            segs = [s for s in re.split(r"\s*::\s*", p.split(" as ")[0].strip()) if s]
            if not segs:
                continue
            if segs[0] == "crate":
                target = resolve(segs[1:])
            elif segs[0] == "super":
                base = list(mod if f.endswith("mod.rs") is False else mod)
                # `super` of a file module is its parent; of a mod.rs, the parent of its folder.
                base = list(mod[:-1])
                rest = segs[1:]
                while rest and rest[0] == "super":
                    base = base[:-1]
                    rest = rest[1:]
                target = resolve(base + rest) if base + rest else None
            else:
                continue
            if target and target != f and target not in ("lib.rs", "main.rs"):
                edges[f].add(target)

    # Strongly connected components (Tarjan).
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(files):
        if v not in index:
            visit(v)
    circles = [c for c in comps if len(c) > 1]

    cross = []
    for f in sorted(files):
        lf = layer(f)
        for t in sorted(edges[f]):
            lt = layer(t)
            if lf in FORBIDDEN and lt in FORBIDDEN[lf]:
                cross.append((f, lf, t, lt))

    print(f"{len(files)} files under {ROOT}, {sum(len(e) for e in edges.values())} imports between them")
    print(f"import circles: {len(circles)}")
    for c in circles:
        inner = {f: sorted(t for t in edges[f] if t in c) for f in c}
        print("  - " + ", ".join(c))
        for f in c:
            print(f"      {f} -> {', '.join(inner[f])}")
    print(f"cross-layer imports: {len(cross)}")
    for f, lf, t, lt in cross:
        print(f"  - {f} ({lf}) -> {t} ({lt})")
    return 1 if circles or cross else 0


if __name__ == "__main__":
    sys.exit(main())
