import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout_serving.domain.drift_profile import build_profile
from turnout_serving.domain.drift_window import DriftWindow

HUNDRED = np.arange(1.0, 101.0)  # edges 2, 4, ..., 98: two reference rows per bin


@pytest.fixture
def profile():
    frame = pd.DataFrame({"x": HUNDRED, "city": ["a"] * 60 + ["b"] * 30 + ["c"] * 10})
    return build_profile(frame, HUNDRED, top_k=2)  # vocabulary a, b; c is out of vocabulary


def test_observing_the_reference_sample_gives_back_its_counts(profile):
    window = DriftWindow(profile, window_rows=100, blocks=10)
    cities = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10, dtype=object)
    window.observe({"x": HUNDRED, "city": cities}, HUNDRED)
    assert window.rows == 100
    assert window.counts("x").tolist() == list(profile.features[0].counts)
    assert window.counts("city").tolist() == [60, 30, 10]
    assert window.prediction_counts().tolist() == [2] * 50


def test_bins_are_right_closed_and_infinities_go_to_the_outer_bins(profile):
    window = DriftWindow(profile, window_rows=100, blocks=10)
    window.observe({"x": np.array([2.0, 2.5, 4.0, -np.inf, np.inf, 98.0, 98.5])})
    expected = np.zeros(50, dtype=int)
    np.add.at(expected, [0, 1, 1, 0, 49, 48, 49], 1)  # x <= 2 | 2 < x <= 4 | ... | x > 98
    np.testing.assert_array_equal(window.counts("x"), expected)


def test_a_full_window_evicts_its_oldest_block_when_the_next_row_arrives(profile):
    window = DriftWindow(profile, window_rows=10, blocks=5)  # blocks of 2 rows
    window.observe({"x": np.arange(1.0, 11.0)})  # rows 1..10 fill all five blocks
    assert window.rows == 10
    window.observe({"x": np.array([11.0])})  # evicts rows 1 and 2
    assert window.rows == 9
    assert window.counts("x")[0] == 0  # rows 1 and 2 were the only ones <= 2
    assert window.counts("x").sum() == 9


@pytest.mark.parametrize("batch", [1, 3, 7, 25, 64])
def test_batches_split_across_blocks_like_single_rows(profile, batch):
    """After T rows the window holds the last (blocks - 1) full blocks plus the current one."""
    window = DriftWindow(profile, window_rows=20, blocks=4)  # blocks of 5 rows
    stream = np.random.default_rng(batch).uniform(0, 101, 137)
    for start in range(0, len(stream), batch):
        window.observe({"x": stream[start : start + batch]})
    in_current = (len(stream) - 1) % 5 + 1
    kept = stream[-(15 + in_current) :]
    assert window.rows == len(kept) == 17
    expected = np.bincount(np.searchsorted(np.arange(2.0, 100.0, 2.0), kept), minlength=50)
    np.testing.assert_array_equal(window.counts("x"), expected)


def test_missing_and_unseen_values_are_lifetime_totals(profile):
    window = DriftWindow(profile, window_rows=10, blocks=5)
    batch = {
        "x": np.array([1.0, np.nan, None, 3.0], dtype=object),
        "city": np.array(["a", "zzz", None, np.nan], dtype=object),
    }
    for _ in range(5):  # 20 rows: the window has evicted the first batches
        window.observe(batch)
    assert window.missing_total == {"x": 10, "city": 10}
    assert window.unseen_total == {"x": 0, "city": 5}
    assert window.rows == 10
    # The window holds rows 11..20: two whole batches and the missing tail of the one before.
    assert window.counts("city").tolist() == [2, 0, 2]


def test_values_that_are_not_numbers_are_unseen_in_a_numeric_feature(profile):
    window = DriftWindow(profile, window_rows=10, blocks=5)
    window.observe({"x": np.array(["1.5", "abc", None, 7.0], dtype=object)})
    assert (window.unseen_total["x"], window.missing_total["x"]) == (1, 1)
    assert window.counts("x").sum() == 2  # "1.5" is read as the number it spells


def test_absent_known_columns_and_unknown_columns_are_ignored(profile):
    window = DriftWindow(profile, window_rows=10, blocks=5)
    window.observe({"city": np.array(["a", "b"], dtype=object), "other": np.zeros(2)})
    assert window.rows == 2
    assert window.counts("x").sum() == 0
    assert window.missing_total["x"] == 0
    assert window.prediction_counts().sum() == 0


def test_a_ragged_batch_is_refused_and_leaves_the_window_as_it_was(profile):
    window = DriftWindow(profile, window_rows=10, blocks=5)
    with pytest.raises(ValueError, match="differ in length"):
        window.observe({"x": np.array([np.nan, 1.0]), "city": np.array(["a"], dtype=object)})
    assert (window.rows, window.missing_total["x"], window.counts("x").sum()) == (0, 0, 0)


def test_labels_are_compared_as_strings(profile):
    frame = pd.DataFrame({"flag": [True, False, True]})
    window = DriftWindow(build_profile(frame), window_rows=10, blocks=5)
    window.observe({"flag": np.array([True, True, False])})
    assert window.counts("flag").tolist() == [2, 1, 0]


@pytest.mark.parametrize(("rows", "blocks"), [(0, 1), (10, 0), (-5, 20)])
def test_window_and_blocks_must_be_positive(profile, rows, blocks):
    with pytest.raises(ValueError, match="must be positive"):
        DriftWindow(profile, window_rows=rows, blocks=blocks)


def kept_by_the_ring(stream: np.ndarray, capacities: list[int]) -> np.ndarray:
    """The rows a ring of blocks with these capacities holds after `stream`: blocks fill in
    turn, and the window is the last len(capacities) blocks filled (the current one included)."""
    fills, start, block = [], 0, 0
    while start < len(stream):
        fills.append(stream[start : start + capacities[block]])
        start += capacities[block]
        block = (block + 1) % len(capacities)
    return np.concatenate(fills[-len(capacities) :]) if fills else stream[:0]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    window_rows=st.integers(1, 3000),
    blocks=st.integers(1, 40),
    batches=st.lists(st.integers(1, 700), max_size=12),
)
def test_any_window_size_holds_exactly_the_rows_of_its_last_blocks(
    window_rows: int, blocks: int, batches: list[int]
) -> None:
    """Window sizes that are not a multiple of the blocks (1001 rows in 20 blocks) work: the
    capacities add up to the window, it never holds more, and exactly what the ring keeps."""
    profile = build_profile(pd.DataFrame({"x": HUNDRED}), top_k=2)
    window = DriftWindow(profile, window_rows=window_rows, blocks=blocks)
    stream = np.random.default_rng(window_rows).uniform(0, 101, sum(batches))
    start = 0
    for size in batches:
        window.observe({"x": stream[start : start + size]})
        start += size
        assert window.rows <= window_rows
    used = min(blocks, window_rows)
    capacities = [window_rows // used + (i < window_rows % used) for i in range(used)]
    assert sum(capacities) == window_rows
    kept = kept_by_the_ring(stream, capacities)
    assert window.rows == len(kept)
    if len(stream) >= window_rows:
        assert window.rows >= window_rows - max(capacities)
    expected = np.bincount(np.searchsorted(np.arange(2.0, 100.0, 2.0), kept), minlength=50)
    np.testing.assert_array_equal(window.counts("x"), expected)


def test_a_window_of_1001_rows_fills_to_1001_before_it_evicts(profile):
    window = DriftWindow(profile, window_rows=1001)  # 20 blocks: one of 51 rows, 19 of 50
    window.observe({"x": np.ones(1001)})
    assert window.rows == 1001
    window.observe({"x": np.ones(1)})
    assert window.rows == 1001 - 51 + 1
