import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from turnout_serving.domain.drift_profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
)


def one_to_hundred() -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(1.0, 101.0)})


def test_numeric_edges_are_the_two_percent_quantiles_of_the_sample():
    feature = build_profile(one_to_hundred()).features[0]
    assert isinstance(feature, NumericProfile)
    assert feature.edges == tuple(float(e) for e in range(2, 100, 2))
    assert feature.counts == (2,) * 50  # (-inf, 2], (2, 4], ..., (98, inf)
    assert feature.decile_edges == (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)
    assert feature.decile_counts == (10,) * 10
    assert feature.rows == 100
    assert feature.missing == 0


def test_tied_quantiles_collapse_into_one_edge():
    feature = build_profile(pd.DataFrame({"flag": [0] * 50 + [1] * 50})).features[0]
    assert isinstance(feature, NumericProfile)
    assert feature.edges == (0.0, 1.0)
    assert feature.counts == (50, 50, 0)
    assert feature.decile_edges == (0.0, 1.0)
    assert feature.decile_counts == (50, 50, 0)


def test_missing_values_are_counted_apart_and_infinities_bin_outside():
    frame = pd.DataFrame({"x": [np.nan, 1.0, 2.0, np.inf, -np.inf, None]})
    feature = build_profile(frame).features[0]
    assert isinstance(feature, NumericProfile)
    assert feature.missing == 2
    assert feature.rows == 4
    assert all(np.isfinite(feature.edges))
    assert feature.counts[0] >= 1 and feature.counts[-1] == 1  # -inf first bin, +inf last


def test_categorical_keeps_the_top_k_by_frequency_and_an_out_of_vocabulary_bin():
    frame = pd.DataFrame({"city": ["b"] * 3 + ["a"] * 3 + ["c"] * 2 + ["d"] + [None]})
    feature = build_profile(frame, top_k=2).features[0]
    assert feature == CategoricalProfile(
        name="city", vocabulary=("a", "b"), counts=(3, 3, 3), missing=1
    )


@pytest.mark.parametrize(
    ("column", "vocabulary", "counts"),
    [
        (pd.Series([True, False, True]), ("True", "False"), (2, 1, 0)),
        (pd.Series(["x", "y", "x"], dtype="category"), ("x", "y"), (2, 1, 0)),
        (pd.Series(["x", "y", "x"], dtype="string"), ("x", "y"), (2, 1, 0)),
    ],
)
def test_bools_strings_and_categories_are_categorical(column, vocabulary, counts):
    feature = build_profile(pd.DataFrame({"c": column})).features[0]
    assert isinstance(feature, CategoricalProfile)
    assert (feature.vocabulary, feature.counts) == (vocabulary, counts)


def test_predictions_are_profiled_by_their_own_kind():
    numeric = build_profile(one_to_hundred(), np.arange(100.0) + 1).prediction
    labels = build_profile(one_to_hundred(), np.array(["yes"] * 70 + ["no"] * 30)).prediction
    assert isinstance(numeric, NumericProfile) and numeric.counts == (2,) * 50
    assert isinstance(labels, CategoricalProfile)
    assert (labels.name, labels.vocabulary, labels.counts) == (
        "prediction",
        ("yes", "no"),
        (70, 30, 0),
    )


def test_one_column_prediction_matrix_is_accepted_and_other_shapes_refused():
    profile = build_profile(one_to_hundred(), np.arange(100.0).reshape(-1, 1))
    assert profile.prediction is not None and profile.prediction.rows == 100
    with pytest.raises(ValueError, match="one value per row"):
        build_profile(one_to_hundred(), np.zeros((100, 2)))


def test_unsupported_columns_are_refused():
    with pytest.raises(TypeError, match="convert it"):
        build_profile(pd.DataFrame({"t": pd.to_datetime(["2024-01-01"])}))
    with pytest.raises(ValueError, match="duplicate"):
        build_profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))


def test_round_trip_through_json_keeps_the_profile_and_its_digest():
    frame = pd.DataFrame({"x": np.linspace(-3, 3, 500), "c": ["u", "v", "w", "u", "u"] * 100})
    profile = build_profile(frame, np.linspace(0, 1, 500))
    data = json.loads(json.dumps(profile.to_dict(), allow_nan=False))
    assert data["format"] == 1
    again = ReferenceProfile.from_dict(data)
    assert again == profile
    assert again.digest == profile.digest


def test_the_same_data_always_gives_the_same_digest():
    first = build_profile(one_to_hundred())
    assert build_profile(one_to_hundred()).digest == first.digest
    canonical = json.dumps(first.to_dict(), sort_keys=True, separators=(",", ":"))
    assert first.digest == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert first.digest == "11e99499e7bddd43"  # pinned: the same data, the same digest, always
    assert build_profile(one_to_hundred() + 1).digest != first.digest


def test_unknown_format_is_refused():
    data = build_profile(one_to_hundred()).to_dict()
    with pytest.raises(ValueError, match="format"):
        ReferenceProfile.from_dict({**data, "format": 2})


def test_inconsistent_bins_are_refused():
    with pytest.raises(ValueError, match="counts"):
        NumericProfile("x", edges=(1.0,), counts=(1,), decile_edges=(), decile_counts=(1,))
    with pytest.raises(ValueError, match="subset"):
        NumericProfile("x", edges=(1.0,), counts=(1, 1), decile_edges=(2.0,), decile_counts=(1, 1))
