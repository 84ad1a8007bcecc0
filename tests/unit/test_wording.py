"""Code, tests, benchmarks, scripts and docs speak of the product, never of the work that made it:
no "issue", "ticket", "section 5", "this task", "acceptance criteria". A reader of turnout has no
issue tracker to look things up in; what a module promises is said in the module.

"task" alone stays allowed: it is also a model's task (regression, classification) and asyncio's
Task; only the phrases that point at a piece of work are refused. A link to another project's
issue tracker (an upstream bug the code works around) is allowed; so is the license's own text.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN = re.compile(
    r"\b(issues?|tickets?|section \d+|(?:this|the|your|my|our) tasks?|acceptance criteria|"
    r"deliverables?|user stor(?:y|ies))\b",
    re.IGNORECASE,
)
# Links to other projects' issue trackers (github.com/OWNER/REPO/issues/N, not turnout's own).
UPSTREAM_BUG = re.compile(
    r"https://github\.com/(?!turnout-dev/)[\w.-]+/[\w.-]+/(?:issues|pull)/\d+"
)
ALLOWED_FILES = {
    "LICENSE",  # the Apache License's text ("issue tracking systems")
    "tests/unit/test_wording.py",  # the rule itself
}
SUFFIXES = {".py", ".md", ".sh", ".toml", ".yaml", ".yml", ".json", ".txt", ".tpl", ".lua", ".cfg"}
NAMES = {"Makefile", "Dockerfile", ".dockerignore", ".helmignore", ".gitignore"}


def scanned() -> list[Path]:
    """Every file of the repository a person writes (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    return [
        ROOT / name for name in sorted(set(listed))
        if name not in ALLOWED_FILES and (ROOT / name).is_file()
        and (Path(name).suffix in SUFFIXES or Path(name).name in NAMES)
    ]  # fmt: skip


def forbidden(line: str) -> list[str]:
    return [match[0] for match in FORBIDDEN.finditer(UPSTREAM_BUG.sub("", line))]


def findings(path: Path, text: str) -> list[str]:
    return [
        f"{path}:{number}: {word!r} in {line.strip()[:100]!r}"
        for number, line in enumerate(text.splitlines(), start=1)
        for word in forbidden(line)
    ]


def test_the_product_is_all_they_speak_of() -> None:
    files = scanned()
    assert len(files) > 100 and ROOT / "README.md" in files
    found = [f for p in files for f in findings(p.relative_to(ROOT), p.read_text(errors="ignore"))]
    assert not found, "words about the work, not the product:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ('"""The issue\'s rollout scenarios end to end."""', ["issue"]),
        ("# The Issues' targets.", ["Issues"]),
        ("see ticket 42 and Section 5 of this task", ["ticket", "Section 5", "this task"]),
        ("meets the acceptance criteria", ["acceptance criteria"]),
        ("task = _task_of(model)  # regression or classification", []),
        ("loop's tasks are cancelled", []),
        ("works around https://github.com/mlflow/mlflow/issues/1234", []),
        ("see https://github.com/turnout-dev/turnout/issues/7", ["issues"]),
        ("tissue reissued", []),
    ],
)  # fmt: skip
def test_forbidden(line: str, found: list[str]) -> None:
    assert forbidden(line) == found
