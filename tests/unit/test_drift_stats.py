import math

import numpy as np
import pandas as pd
import pytest
from scipy import special
from scipy.stats import chi2_contingency, kstwo

from turnout_serving.domain.drift_profile import build_profile
from turnout_serving.domain.drift_stats import (
    BETA,
    chi2_test,
    compute,
    effective_n,
    ks_p_value,
    ks_statistic,
    psi,
)
from turnout_serving.domain.drift_window import DriftWindow

HUNDRED = np.arange(1.0, 101.0)  # edges 2, 4, ..., 98: two reference rows per bin


def test_beta_is_the_brownian_continuity_constant():
    assert math.isclose(BETA, -special.zeta(0.5) / math.sqrt(2 * math.pi), rel_tol=1e-15)


def test_ks_on_few_rows_is_kstwo_of_the_corrected_distance():
    reference = np.full(50, 2)  # N = 100
    live = np.r_[np.full(25, 2), np.zeros(25, dtype=int)]  # W = 50, all of it at or below 50
    d = ks_statistic(reference, live)
    assert d == 0.5  # at the edge 50: F_live = 1, F_ref = 0.5
    assert effective_n(100, 50) == 33
    p = ks_p_value(np.array([d]), np.array([33]))[0]
    assert p == kstwo.sf(0.5 + BETA * math.sqrt(0.02 / 33), 33)


def test_ks_on_many_rows_is_stephens_form_of_kstwo():
    reference = np.full(50, 200)  # N = 10,000
    live = np.r_[80, np.full(47, 40), 20, 20]  # W = 2,000, 2 % too many in the first bin
    d = ks_statistic(reference, live)
    assert d == pytest.approx(0.02, abs=1e-15)
    n = effective_n(10_000, 2000)
    assert n == 1667
    corrected = d + BETA * math.sqrt(0.02 / n)
    root = math.sqrt(n)
    p = ks_p_value(np.array([d]), np.array([n]))[0]
    assert p == special.kolmogorov((root + 0.12 + 0.11 / root) * corrected)
    assert p == pytest.approx(kstwo.sf(corrected, n), rel=0.035)


@pytest.mark.parametrize("n", [50, 98, 455, 1429, 5000])
def test_stephens_form_stays_within_3_5_percent_of_kstwo(n):
    d = np.array([0.6, 1.0, 1.4, 1.8, 2.2]) / math.sqrt(n)
    corrected = d + BETA * math.sqrt(0.02 / n)
    np.testing.assert_allclose(ks_p_value(d, np.full(5, n)), kstwo.sf(corrected, n), rtol=0.035)


@pytest.mark.parametrize(
    "table",
    [
        [[10, 20, 30], [5, 25, 20]],
        [[30, 70], [20, 30]],  # one degree of freedom: Yates' correction
        [[400, 3, 0, 97], [50, 9, 0, 41]],  # a column empty on both sides is dropped
    ],
)
def test_chi2_is_scipys_chi2_contingency(table):
    reference, live = (np.array(row) for row in table)
    kept = np.array(table)[:, np.array(table).sum(axis=0) > 0]
    expected = chi2_contingency(kept)
    statistic, p_value = chi2_test(reference, live)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-12)


def test_chi2_with_a_single_category_left_is_no_evidence():
    assert chi2_test(np.array([10, 0]), np.array([5, 0])) == (0.0, 1.0)


def test_psi_is_the_symmetric_kullback_leibler_of_the_shares():
    assert psi(np.array([50, 50]), np.array([80, 20])) == pytest.approx(
        0.3 * math.log(0.8 / 0.5) + 0.3 * math.log(0.5 / 0.2), rel=1e-12
    )


def test_psi_clips_empty_shares_at_one_in_ten_thousand():
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi(np.array([100, 0]), np.array([50, 50])) == pytest.approx(expected, rel=1e-12)


@pytest.fixture
def profile():
    frame = pd.DataFrame({"x": HUNDRED, "city": ["a"] * 50 + ["b"] * 50})
    return build_profile(frame, HUNDRED)


def test_an_empty_window_is_no_evidence(profile):
    report = compute(DriftWindow(profile, window_rows=100, blocks=10), profile)
    assert [(r.name, r.test, r.statistic, r.p_value, r.psi, r.rows) for r in report.tests] == [
        ("x", "ks", 0.0, 1.0, 0.0, 0),
        ("city", "chi2", 0.0, 1.0, 0.0, 0),
        ("prediction", "ks", 0.0, 1.0, 0.0, 0),
    ]
    assert (report.detected, report.threshold, report.window_rows) == (False, 0.05 / 3, 0)


def test_numeric_psi_folds_the_live_bins_into_the_reference_deciles(profile):
    window = DriftWindow(profile, window_rows=100, blocks=10)
    window.observe({"x": np.ones(40)})  # every row in the first decile, where 10 % are expected
    report = compute(window, profile)
    [x] = [r for r in report.features if r.name == "x"]
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert x.psi == pytest.approx(expected, rel=1e-12)
    assert (x.statistic, x.rows) == (0.98, 40)  # at the edge 98: F_live = 1, F_ref = 0.02


def test_drift_is_detected_when_a_p_value_is_below_alpha_over_the_number_of_tests(profile):
    window = DriftWindow(profile, window_rows=100, blocks=10)
    window.observe({"x": HUNDRED[:80], "city": np.array(["a"] * 50 + ["b"] * 30, dtype=object)})
    lowest = min(r.p_value for r in compute(window, profile).tests)
    assert 0 < lowest < 0.05
    assert compute(window, profile, alpha=3 * lowest * 1.01).detected
    assert not compute(window, profile, alpha=3 * lowest * 0.99).detected
    assert compute(window, profile, alpha=0.06).threshold == pytest.approx(0.02)


def test_a_window_built_for_another_profile_is_refused(profile):
    other = build_profile(pd.DataFrame({"x": HUNDRED + 1}))
    with pytest.raises(ValueError, match="another reference profile"):
        compute(DriftWindow(other, window_rows=100, blocks=10), profile)


def _sample(rng: np.random.Generator, rows: int, shift: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, rows),
            "y": rng.exponential(1.0, rows),
            "colour": rng.choice(np.array(["red", "green", "blue"], dtype=object), rows),
        }
    )


@pytest.mark.parametrize(("shift", "detected"), [(0.5, True), (0.0, False)])
def test_half_a_standard_deviation_on_2000_rows_is_detected_and_no_shift_is_not(shift, detected):
    reference = _sample(np.random.default_rng(1), 5000, 0.0)
    live = _sample(np.random.default_rng(2), 2000, shift)
    profile = build_profile(reference)
    window = DriftWindow(profile)
    for start in range(0, 2000, 100):
        window.observe({c: live[c].to_numpy()[start : start + 100] for c in live.columns})
    report = compute(window, profile)
    assert report.window_rows == 2000
    assert report.detected is detected
    p_values = {r.name: r.p_value for r in report.features}
    assert (p_values["x"] < 1e-12) is detected
    assert min(p_values["y"], p_values["colour"]) > report.threshold
