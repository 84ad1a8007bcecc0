"""README.md's "Where turnout differs on purpose" table is the one scripts/parity_table.py
generates from the `Difference` records now, and the generator writes records as table rows."""

from __future__ import annotations

from types import ModuleType

from tests.conftest import ROOT, load_script
from tests.parity.differences import Difference, all_differences


def generator() -> ModuleType:
    return load_script("parity_table")


def test_readme_table_is_current() -> None:
    doc = generator()
    current = (ROOT / "README.md").read_text()
    assert doc.with_table(current, doc.table(all_differences())) == current, (
        "README.md is stale: run python scripts/parity_table.py --write"
    )


def test_records_become_rows() -> None:
    record = Difference(
        key="k",
        topic="A `long` | pipe",
        example='`{"inputs": [1]}`',
        mlflow="200:\n  the model gets 1",
        turnout="400",
        why="Because.",
    )
    assert generator().table([record]) == (
        "| Input | Example | `mlflow models serve` | `turnout-serve` | Why |\n"
        "|---|---|---|---|---|\n"
        '| A `long` \\| pipe | `{"inputs": [1]}` | 200: the model gets 1 | 400 | Because. |\n'
    )


def test_keys_are_unique() -> None:
    keys = [d.key for d in all_differences()]
    assert len(keys) == len(set(keys))
