#!/usr/bin/env python3
"""Fail if any crate's modules import each other in a cycle (issue 11).

For every `crates/*/src`, each module's `crate::…` paths (outside comments and `#[cfg(test)]`
code) are edges to the modules they name; a pair of modules that reach each other is a
cycle. Prints the cycles and exits 1 when there are any.
"""
import glob
import os
import re
import sys


def module_of(src: str, path: str) -> str:
    mod = os.path.relpath(path, src)[:-3].replace("/", "::")
    return mod[:-5] if mod.endswith("::mod") else mod


def exists(src: str, mod: str) -> bool:
    base = os.path.join(src, mod.replace("::", "/"))
    return os.path.exists(base + ".rs") or os.path.exists(os.path.join(base, "mod.rs"))


def graph(src: str) -> dict:
    g = {}
    for f in glob.glob(src + "/**/*.rs", recursive=True):
        mod = module_of(src, f)
        if mod in ("lib", "main"):
            continue
        text = open(f, encoding="utf-8").read().split("#[cfg(test)]")[0]
        code = "\n".join(l for l in text.splitlines() if not l.strip().startswith("//"))
        deps = set()
        for m in re.finditer(r"crate::([a-z_]+(?:::[a-z_]+)?)", code):
            path = m.group(1)
            target = next((k for k in (path, path.split("::")[0]) if exists(src, k)), None)
            if target and target != mod:
                deps.add(target)
        g[mod] = deps
    return g


def cycles(g: dict) -> list:
    found = set()
    for a, deps in g.items():
        for b in deps:
            seen, stack = set(), [b]
            while stack:
                x = stack.pop()
                if x == a:
                    found.add(tuple(sorted((a, b))))
                    break
                if x not in seen:
                    seen.add(x)
                    stack.extend(g.get(x, ()))
    return sorted(found)


def main() -> int:
    bad = 0
    for src in sorted(glob.glob("crates/*/src")):
        for a, b in cycles(graph(src)):
            print(f"{src}: {a} and {b} import each other (directly or through others)")
            bad += 1
    if not bad:
        print("no import cycles between modules")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
