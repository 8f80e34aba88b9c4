#!/usr/bin/env python3
"""Fail on a broken link in the project's Markdown: every relative link in README.md and the
book under docs/ (and the READMEs beside the code) must name a file that exists, and a
`#fragment` must name a heading of the file it points into (headings become anchors as GitHub
and mdBook make them: lower case, spaces to hyphens, punctuation dropped). Links inside code
are not links. Every chapter file under docs/ must be listed in docs/SUMMARY.md, so no page
of the book is unreachable.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = ["README.md", "deploy/README.md", "models/README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with inline code removed."""
    out, fenced = [], False
    for n, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, re.sub(r"`[^`]*`", "", line)))
    return out


def slug(heading: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    found, seen = set(), {}
    for _, line in prose(path.read_text()):
        m = HEADING.match(line)
        if m:
            s = slug(m.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return found


def check(name: str) -> list[str]:
    path = ROOT / name
    problems = []
    for n, line in prose(path.read_text()):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, fragment = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{name}:{n}: {target}"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                problems.append(f"{where}: no heading with that anchor in {dest.name}")
    return problems


def unlisted() -> list[str]:
    summary = (ROOT / "docs" / "SUMMARY.md").read_text()
    listed = set(LINK.findall(summary))
    return [f"docs/{p.name}: not in docs/SUMMARY.md" for p in (ROOT / "docs").glob("*.md")
            if p.name != "SUMMARY.md" and p.name not in listed]


def main() -> int:
    problems = [p for name in FILES for p in check(name)] + unlisted()
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} broken link(s)", file=sys.stderr)
        return 1
    print(f"every link in {len(FILES)} Markdown files resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
