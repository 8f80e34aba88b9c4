#!/usr/bin/env python3
"""Fail when an error type prints a cause that its `source()` also returns, or when more than
ten functions answer `Result<_, String>` (issue 26).

An error shows its cause once: either in its own message (the field is then not a source) or
through `source()` (`#[from]`, `#[source]`, a field named `source`), which `{:#}` and the
CLI print after it. Both would print the cause twice.

Each `#[error("…")]` is read with the variant or struct that follows it, up to the bracket
that closes its fields; `#[error(transparent)]` forwards both, so it is fine.
"""
import glob
import re
import sys

MAX_STRING_ERRORS = 10
STRING_ERROR = re.compile(r"Result<[^;{]*, *String>")
ERROR_ATTR = re.compile(r'#\[error\("((?:[^"\\]|\\.)*)"')


def fields_after(text: str, start: int) -> str:
    """The declaration after an attribute: up to its closing bracket (or `,` for unit)."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        elif ch in ",;" and depth == 0:
            return text[start:i]
        i += 1
    return text[start:]


def sources(decl: str) -> list[str]:
    """The names (`0` for a tuple's first field) of the fields `source()` returns."""
    out = []
    body = decl[decl.find("(") + 1 :] if "(" in decl.split("{")[0] else ""
    if body:
        if "#[from]" in body.split(",")[0] or "#[source]" in body.split(",")[0]:
            out.append("0")
        return out
    for m in re.finditer(r"(#\[(?:from|source)\]\s*)?(?:pub\s+)?([a-z_][a-z_0-9]*)\s*:", decl):
        if m.group(1) or m.group(2) == "source":
            out.append(m.group(2))
    return out


def main() -> int:
    problems = []
    strings = []
    for path in sorted(glob.glob("crates/*/src/**/*.rs", recursive=True)):
        text = open(path, encoding="utf-8").read()
        for n, line in enumerate(text.splitlines(), 1):
            if STRING_ERROR.search(line):
                strings.append(f"{path}:{n}: {line.strip()}")
        for m in ERROR_ATTR.finditer(text):
            message = m.group(1)
            end = text.index("]", m.end()) + 1
            decl = fields_after(text, end)
            for name in sources(decl):
                if "{" + name + "}" in message or "{" + name + ":" in message:
                    n = text.count("\n", 0, m.start()) + 1
                    problems.append(f"{path}:{n}: prints `{name}`, which source() also returns")
    for p in problems:
        print(p)
    if len(strings) > MAX_STRING_ERRORS:
        print("\n".join(strings))
        print(f"{len(strings)} functions answer Result<_, String> (at most {MAX_STRING_ERRORS})")
    ok = not problems and len(strings) <= MAX_STRING_ERRORS
    print(
        f"error style: {len(problems)} cause(s) printed twice, "
        f"{len(strings)} Result<_, String> (at most {MAX_STRING_ERRORS})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
