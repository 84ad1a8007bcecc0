"""The shipped Grafana dashboards: what scripts/dashboards.py builds, byte for byte, and
well-formed the way Grafana needs them (unique ids, a layout with no overlap, a query in every
panel, every variable defined, the datasource chosen by a variable)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from scripts import dashboards as builder

from tests.observability.promql import (
    GRAFANA_GLOBALS,
    dashboards,
    panel_queries,
    variables_used,
)

BOARDS = dashboards()
EXPECTED = {
    "turnout-serving.json": ("turnout-serving", "turnout / Model serving"),
    "turnout-rollouts.json": ("turnout-rollouts", "turnout / Rollouts"),
}


def test_the_files_are_what_the_builder_writes(capsys: pytest.CaptureFixture[str]) -> None:
    assert builder.main(["--check"]) == 0, capsys.readouterr().out


def test_check_names_a_file_that_was_edited_by_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert builder.main(["--dir", str(tmp_path)]) == 0
    assert builder.main(["--check", "--dir", str(tmp_path)]) == 0
    edited = tmp_path / "turnout-rollouts.json"
    edited.write_text(edited.read_text().replace('"refresh": "30s"', '"refresh": "5s"'))
    capsys.readouterr()
    assert builder.main(["--check", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        f"out of date: turnout-rollouts.json in {tmp_path}; run python scripts/dashboards.py\n"
    )


def test_the_dashboards_shipped() -> None:
    found = {name: (board["uid"], board["title"]) for name, board in BOARDS.items()}
    assert found == EXPECTED
    for board in BOARDS.values():
        assert board["tags"] == ["turnout"]
        assert board["schemaVersion"] >= 39
        assert board["id"] is None  # Grafana assigns it; a fixed one clashes on import


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_are_unique_and_the_layout_has_no_overlap(name: str) -> None:
    board = BOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    boxes = [(p["title"], p["gridPos"]) for p in board["panels"]]
    for title, box in boxes:
        assert box["x"] >= 0 and box["w"] > 0 and box["x"] + box["w"] <= 24, title
    for (a, box), (b, other) in combinations(boxes, 2):
        apart = (box["x"] + box["w"] <= other["x"] or other["x"] + other["w"] <= box["x"]
                 or box["y"] + box["h"] <= other["y"] or other["y"] + other["h"] <= box["y"])  # fmt: skip
        assert apart, f"{a!r} overlaps {b!r}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_panel_queries_prometheus_through_the_datasource_variable(name: str) -> None:
    board = BOARDS[name]
    (datasource,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel["description"], f"{panel['title']} does not say what it answers"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_variable_used_is_defined_and_every_one_defined_is_used(name: str) -> None:
    board = BOARDS[name]
    defined = {v["name"] for v in board["templating"]["list"]}
    texts = [q.expr for q in panel_queries(name, board)]
    texts += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    texts += [p["datasource"]["uid"] for p in board["panels"] if "datasource" in p]
    used = set().union(*(variables_used(text) for text in texts))
    assert used - GRAFANA_GLOBALS - defined == set()
    assert defined - used == set()


def test_variables_are_chained_in_the_order_they_are_defined() -> None:
    """Grafana refreshes variables in order: one may only filter on those before it."""
    for board in BOARDS.values():
        before: set[str] = set()
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                assert variables_used(variable["query"]) <= before, variable["name"]
            before.add(variable["name"])
