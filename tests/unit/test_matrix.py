"""The feature matrix's rows (tests/integration/matrix.py) cover every pair of levels: checked
here by enumerating the pairs, independently of the generator that chose the rows, so a row it
silently dropped would fail this test rather than leave a pair of features untested."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.matrix import FACTORS, covering_array, rows


def uncovered(factors: dict[str, tuple[Any, ...]], table: list[dict[str, Any]]) -> list[tuple]:  # type: ignore[type-arg]
    """Every ((factor, level), (factor, level)) pair that no row of `table` holds."""
    missing = []
    for first, second in itertools.combinations(factors, 2):
        for a, b in itertools.product(factors[first], factors[second]):
            if not any(row[first] == a and row[second] == b for row in table):
                missing.append(((first, a), (second, b)))
    return missing


def test_the_matrix_rows_cover_every_pair_of_levels() -> None:
    table = [{f: row.level(f) for f in FACTORS} for row in rows()]
    assert uncovered(FACTORS, table) == []
    # every level is a level of its factor, and the pairs are many more than the rows
    assert all(row[f] in FACTORS[f] for row in table for f in FACTORS)
    pairs = sum(len(FACTORS[a]) * len(FACTORS[b]) for a, b in itertools.combinations(FACTORS, 2))
    assert (pairs, len(table)) == (240, 10)


def test_the_matrix_rows_have_distinct_ids_naming_their_features() -> None:
    ids = [row.id for row in rows()]
    assert len(set(ids)) == len(ids)
    first = rows()[0]
    assert first.id == "r1-version"  # everything off
    assert all(row.id.split("-")[1] == row.model for row in rows())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(2, 4), min_size=2, max_size=6))
def test_the_generator_covers_every_pair_of_any_factor_shape(levels: list[int]) -> None:
    factors = {f"f{i}": tuple(range(n)) for i, n in enumerate(levels)}
    assert uncovered(factors, covering_array(factors)) == []
