"""Every relative link of the docs leads somewhere: the file exists, and the `#anchor` is a
heading of it (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs.markdown import DOCS, blocks

_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`]*`")
_HEADING = re.compile(r"^#{1,6} (?P<title>.+?)\s*#*$")


def anchors(path: Path) -> set[str]:
    inside = {n for b in blocks(path) for n in range(b.line, b.line + len(b.lines) + 2)}
    found = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if number not in inside and (heading := _HEADING.match(line)):
            slug = re.sub(r"[^\w\- ]", "", heading["title"].lower()).replace(" ", "-")
            found.add(slug)
    return found


def links(path: Path) -> list[tuple[int, str]]:
    return [
        (number, match["target"])
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for match in _LINK.finditer(_CODE_SPAN.sub("", line))  # `[a-z]([-a-z]*)` is no link
        if not re.match(r"^[a-z][a-z0-9+.-]*:", match["target"])  # http:, mailto:, ...
    ]


@pytest.mark.parametrize("path", [p for p in DOCS if p.exists()],
                         ids=lambda p: str(p.relative_to(ROOT)))  # fmt: skip
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for number, target in links(path):
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            broken.append(f"{path.relative_to(ROOT)}:{number}: {target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{path.relative_to(ROOT)}:{number}: {target}: no such heading")
    assert not broken, "\n".join(broken)


def test_anchors_are_githubs() -> None:
    assert anchors(ROOT / "docs" / "crd.md") >= {"specmodel", "statushistory", "reference"}
    assert "troubleshooting-by-condition" in anchors(ROOT / "docs" / "operations.md")
