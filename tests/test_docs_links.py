"""Relative links in README.md and docs/*.md resolve: the file exists and a `#anchor` names one of its headings.

The README's Results section is a summary that links into docs/results.md by heading; a renamed heading or a
moved figure would otherwise break it silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def github_slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped (underscores kept), spaces to
    hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = github_slug(line.lstrip("#"))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    return [m.group(1) for m in _LINK.finditer(text)]


def test_slug_rule() -> None:
    assert github_slug("Low-dose CT: PWLS against post-log (2-core CPU, 2026-12-07)") == (
        "low-dose-ct-pwls-against-post-log-2-core-cpu-2026-12-07"
    )
    assert github_slug("Benchmarks: `medrecon benchmark`") == "benchmarks-medrecon-benchmark"
    assert github_slug("`MEDRECON_MAX_GB` and **limits**") == "medrecon_max_gb-and-limits"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    bad = []
    for target in _links(doc):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with that anchor")
    assert not bad, f"{doc.name}: " + "; ".join(bad)
