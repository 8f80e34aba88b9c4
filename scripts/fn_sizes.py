#!/usr/bin/env python3
"""Fail if a function outside tests runs past 65 lines or takes more than five parameters
(issue 11). Table-like registrations are listed in ALLOWED with the reason.

Functions are found by their `fn` line and measured to the brace that closes them; `self`
does not count as a parameter; code after `#[cfg(test)]` in a file is skipped.
"""
import glob
import re
import sys

MAX_LINES = 65
MAX_PARAMS = 5
ALLOWED = {
    # One registration per metric, in the order /metrics lists them.
    ("crates/tradeserve-server/src/metrics.rs", "new"),
}
FN = re.compile(r"\s*(pub(\([a-z]+\))? )?(async )?(const )?(unsafe )?fn ([a-z_0-9]+)")


def code_of(line: str) -> str:
    line = re.sub(r'"([^"\\]|\\.)*"', '""', line)
    line = re.sub(r"'.'", "''", line)
    return line.split("//")[0]


def params(sig: str) -> int:
    body = sig[sig.find("(") + 1:]
    depth, count, current = 0, 0, ""
    for ch in body:
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            count += 1
            current = ""
        else:
            current += ch
    if current.strip():
        count += 1
    first = body.split(",")[0]
    return count - (1 if "self" in first else 0)


def functions(path: str):
    lines = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0].split("\n")
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        j, sig = i, ""
        while j < len(lines) and "{" not in lines[j] and not lines[j].rstrip().endswith(";"):
            sig += lines[j]
            j += 1
        if j >= len(lines) or "{" not in lines[j]:
            i = j + 1  # a declaration without a body
            continue
        sig += lines[j]
        depth, k = 0, j
        while k < len(lines):
            c = code_of(lines[k])
            depth += c.count("{") - c.count("}")
            if depth <= 0 and k >= j:
                break
            k += 1
        yield m.group(6), i + 1, k - i + 1, params(sig)
        i += 1


def main() -> int:
    bad = 0
    for path in sorted(glob.glob("crates/*/src/**/*.rs", recursive=True)):
        for name, line, length, n in functions(path):
            if (path, name) in ALLOWED:
                continue
            if length > MAX_LINES or n > MAX_PARAMS:
                print(f"{path}:{line}: fn {name}: {length} lines, {n} parameters")
                bad += 1
    if not bad:
        print(f"every function within {MAX_LINES} lines and {MAX_PARAMS} parameters")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
