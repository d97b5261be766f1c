#!/usr/bin/env python3
"""scripts/module-cycles.py — lists cycles between sibling modules of each crate's src/.

A module is a file (`a.rs` or `a/mod.rs`) or a folder; `a/b.rs` is module `a::b`. A
reference from module X to module Y is a path `crate::…`, `super::…` or `self::…` in X's
code (test files — `tests.rs`, `*_tests.rs`, `*_props.rs` — and `#[cfg(test)]` items are
left out). References are lifted to the level where X and Y are
siblings (children of one parent), and cycles among siblings are reported. Exit status 1 when
there is one. Usage: scripts/module-cycles.py [crate dir ...] (default: every workspace crate).
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["proto", "report", "bus", "configcheck", "httpserve", "agent", "coordinator", "cli"]
TEST_FILE = re.compile(r"(^|/)(tests|[a-z_]+_tests|[a-z_]+_props)\.rs$")
PATH = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)+)")


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def code(path):
    """The file's non-test code: comments dropped; a `#[cfg(test)]` item that is a
    `mod x;` declaration is skipped, an inline one ends the file (test modules come last)."""
    with open(path, encoding="utf-8") as f:
        raw = f.read().splitlines()
    lines, i = [], 0
    while i < len(raw):
        line = raw[i].strip()
        if line.startswith("#[cfg(test)]"):
            nxt = raw[i + 1].strip() if i + 1 < len(raw) else ""
            if re.match(r"^(pub(\([a-z]+\))? )?mod [a-z_0-9]+;$", nxt):
                i += 2
                continue
            break
        if not line.startswith("//"):
            lines.append(raw[i])
        i += 1
    return "\n".join(lines)


def known(modules, target):
    """The longest prefix of `target` that is a module."""
    for n in range(len(target), 0, -1):
        if target[:n] in modules:
            return target[:n]
    return None


def cycles(crate):
    src = os.path.join(ROOT, crate, "src")
    files = {}
    for d, _, names in os.walk(src):
        for n in names:
            p = os.path.join(d, n)
            if n.endswith(".rs") and not TEST_FILE.search(p) and "/bin/" not in p:
                files[module_of(src, p)] = p
    modules = set()
    for m in files:
        for n in range(1, len(m) + 1):
            modules.add(m[:n])
    edges = {}
    for m, p in files.items():
        for root, rest in PATH.findall(code(p)):
            parts = tuple(rest.strip(":").split("::"))
            if root == "crate":
                base = ()
            elif root == "self":
                base = m
            else:
                base = m
                for seg in parts:
                    if seg != "super":
                        break
                    base = base[:-1]
                parts = tuple(s for s in parts if s != "super")
                # `super::x` inside a file module `a::b` means `a::x`.
                base = base[:-1] if root == "super" else base
            target = known(modules, base + parts)
            if target is None or target == m:
                continue
            # Lift to siblings: the first differing segment under the common parent.
            k = 0
            while k < min(len(m), len(target)) and m[k] == target[k]:
                k += 1
            if k >= len(m) or k >= len(target):
                continue  # parent <-> child: not a sibling cycle
            a, b = m[: k + 1], target[: k + 1]
            edges.setdefault(a, set()).add(b)
    found = []
    for a, outs in edges.items():
        for b in outs:
            if a < b and a in edges.get(b, set()):
                found.append((a, b))
    return found


def main():
    crates = sys.argv[1:] or CRATES
    bad = 0
    for c in crates:
        for a, b in cycles(c):
            bad += 1
            print(f"{c}: {'::'.join(a)} <-> {'::'.join(b)}")
    print(f"module-cycles: {bad} cycle(s) between sibling modules in {', '.join(crates)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
