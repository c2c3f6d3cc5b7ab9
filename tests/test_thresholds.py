"""F1-optimal threshold on the 1000-step grid (docs/protocol.md §7) against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ad_core.errors import ThresholdError
from ad_core.thresholds import f1_optimal_threshold

pytestmark = pytest.mark.fast


def brute_force(scores, labels, n_steps=1000):
    best_tau, best_f1 = None, -1.0
    for tau in np.linspace(scores.min(), scores.max(), n_steps):
        pred = scores >= tau
        tp = np.sum(pred & (labels == 1))
        fp = np.sum(pred & (labels == 0))
        fn = np.sum(~pred & (labels == 1))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        if f1 > best_f1:  # strict: the first (lowest) tau wins ties
            best_tau, best_f1 = tau, f1
    return best_tau, best_f1


cases = st.integers(2, 40).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 1.0, 2.5, 3.0]) | st.floats(-5, 5)),
        hnp.arrays(np.int64, n, elements=st.integers(0, 1)).filter(lambda y: y.any()),
    )
)


@given(cases)
def test_agrees_with_brute_force(case):
    scores, labels = case
    t = f1_optimal_threshold(scores, labels)
    tau, f1 = brute_force(scores, labels)
    assert t.value == tau
    assert t.val_f1 == pytest.approx(f1, abs=1e-12)


def test_separable_scores_reach_f1_one_at_the_lowest_separating_tau():
    scores = np.array([0.0, 0.1, 0.2, 0.8, 0.9, 1.0])
    t = f1_optimal_threshold(scores, np.array([0, 0, 0, 1, 1, 1]))
    assert t.val_f1 == 1.0
    grid = np.linspace(0, 1, 1000)
    assert t.value == grid[grid > 0.2][0]  # first grid value above the highest normal


def test_grid_has_1000_steps_with_both_ends():
    # with one normal at the min and one anomaly at the max, F1=1 starts just above min
    t = f1_optimal_threshold(np.array([0.0, 999.0]), np.array([0, 1]))
    assert t.value == pytest.approx(1.0) and t.n_steps == 1000


def test_no_anomalies_in_validation_is_a_clear_error():
    with pytest.raises(ThresholdError, match="no anomalous image"):
        f1_optimal_threshold(np.array([0.1, 0.2]), np.array([0, 0]))


def test_constant_scores_flag_everything():
    t = f1_optimal_threshold(np.full(5, 3.0), np.array([0, 0, 1, 1, 1]))
    assert t.value == 3.0 and t.val_f1 == pytest.approx(2 * 3 / (5 + 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_refused(bad):
    with pytest.raises(ValueError, match="non-finite.*index 1"):
        f1_optimal_threshold(np.array([0.1, bad, 0.3]), np.array([0, 1, 1]))


def test_label_checks():
    with pytest.raises(ValueError, match="3 entries for 2 scores"):
        f1_optimal_threshold(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        f1_optimal_threshold(np.array([0.1, 0.2]), np.array([0, 2]))


# -- the normal-only rule and the registry ------------------------------------------------------
@given(st.lists(st.integers(0, 30), min_size=1, max_size=80), st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.25]))
def test_normal_fpr_is_the_lowest_tau_whose_rate_stays_at_the_target(values, fpr):
    """Integer scores make ties common: no tie may push the rate over the target, and no lower tau keeps it."""
    from ad_core.thresholds import normal_fpr_threshold

    s = np.asarray(values, dtype=float)
    t = normal_fpr_threshold(s, np.zeros(s.size), fpr)
    rate = np.mean(s >= t.value)
    assert rate <= fpr + 1e-12 and t.val_fpr == rate and t.rule == f"normal-fpr@{fpr:g}"
    lower = [v for v in np.unique(s) if v < t.value]
    assert all(np.mean(s >= v) > fpr + 1e-12 for v in lower), "a lower tau also kept the rate"
    if rate == 0:
        assert t.value > s.max()


def test_normal_fpr_reads_only_the_normals_and_f1_where_anomalies_exist():
    from ad_core.thresholds import calibrate, normal_fpr_threshold

    normal = np.arange(100, dtype=float)
    with_anomalies = np.r_[normal, [1000.0, 2000.0]]
    labels = np.r_[np.zeros(100), [1, 1]]
    assert normal_fpr_threshold(with_anomalies, labels, 0.05).value == normal_fpr_threshold(normal, np.zeros(100),
                                                                                            0.05).value == 95.0
    tau, why = calibrate(with_anomalies, labels)  # auto: the study's rule where it applies
    assert tau.rule == "f1" and "has anomalous images" in why
    tau, why = calibrate(normal, np.zeros(100))
    assert tau.rule == "normal-fpr@0.01" and tau.value == 99.0 and "no anomalous image" in why
    tau, _ = calibrate(with_anomalies, labels, "normal-fpr", 0.05)
    assert tau.rule == "normal-fpr@0.05" and tau.val_f1 is not None
    with pytest.raises(ThresholdError, match="--threshold f1 cannot be used: the validation set has no anomalous"):
        calibrate(normal, np.zeros(100), "f1")
    with pytest.raises(ValueError, match="threshold rule must be one of auto, f1, normal-fpr"):
        calibrate(normal, np.zeros(100), "youden")
