"""Bootstrap statistics: vectorised metrics equal scikit-learn's, intervals behave, pairing holds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from ad_core.metrics import pixel_auroc, pro_score
from ad_core.metrics.bootstrap import (
    PixelHistograms,
    accuracy_at,
    auroc,
    average_precision,
    f1_at,
    image_intervals,
    paired_difference,
    pixel_intervals,
)
from ad_core.thresholds import f1_at as f1_reference

pytestmark = pytest.mark.fast

score_sets = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1), st.booleans())


def draw(n_neg: int, n_pos: int, seed: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    neg, pos = rng.normal(size=n_neg), rng.normal(0.7, size=n_pos)
    if ties:  # coarse values: many ties within and across classes
        neg, pos = np.round(neg), np.round(pos)
    return neg, pos


@settings(max_examples=100, deadline=None)
@given(score_sets)
def test_vectorised_statistics_equal_scikit_learn(case):
    neg, pos = draw(*case)
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    s = np.r_[neg, pos]
    assert auroc(neg, pos) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(neg, pos) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    tau = float(np.median(s))
    assert f1_at(tau)(neg, pos) == pytest.approx(f1_reference(s, y.astype(bool), tau), abs=1e-12)
    assert accuracy_at(tau)(neg, pos) == pytest.approx(np.mean((s >= tau) == y), abs=1e-12)
    rows = np.stack([neg, neg[::-1]]), np.stack([pos, pos[::-1]])  # row-wise = one by one
    np.testing.assert_allclose(auroc(*rows), [auroc(neg, pos)] * 2)
    np.testing.assert_allclose(average_precision(*rows), [average_precision(neg, pos)] * 2, atol=1e-12)


def test_intervals_hold_the_estimate_are_seeded_and_narrow_with_more_data():
    small, large = draw(12, 14, 0, False), draw(300, 300, 0, False)
    y_small = np.r_[np.zeros(12), np.ones(14)]
    ci = image_intervals(np.r_[small], y_small, 0.3, seed=1)
    assert ci == image_intervals(np.r_[small], y_small, 0.3, seed=1)  # same seed, same interval
    lo, hi = ci["image_auroc"]
    assert lo <= auroc(*small) <= hi
    y_large = np.r_[np.zeros(300), np.ones(300)]
    lo2, hi2 = image_intervals(np.r_[large], y_large, 0.3, seed=1)["image_auroc"]
    assert hi2 - lo2 < (hi - lo) / 2


def test_paired_difference_of_identical_sides_is_zero_and_of_a_better_side_is_positive():
    neg, pos = draw(30, 30, 2, False)
    y = np.r_[np.zeros(30), np.ones(30)]
    s = np.r_[neg, pos]
    point, (lo, hi) = paired_difference([(s, s, auroc, auroc)], [y], seed=0)
    assert point == lo == hi == 0.0  # paired: every resample gives 0 exactly
    better = s + 2.0 * y  # anomalies lifted: a better ranking on the same images
    point, (lo, hi) = paired_difference([(better, s, auroc, auroc)], [y], seed=0)
    assert point == pytest.approx(auroc(neg, pos + 2.0) - auroc(neg, pos)) and 0 < lo <= point <= hi


def test_binned_pixel_metrics_approximate_the_exact_ones():
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 40, 40), bool)
    masks[3:, 10:20, 12:22] = True
    masks[5, 30:34, 2:6] = True
    maps = rng.random((6, 40, 40)).astype(np.float32) + 0.8 * masks
    hist = PixelHistograms(maps, masks)
    w = np.ones((1, 6))
    assert hist.pixel_auroc(w)[0] == pytest.approx(pixel_auroc(maps, masks), abs=2e-3)
    assert hist.pro(w)[0] == pytest.approx(pro_score(maps, masks), abs=1e-2)
    ci = pixel_intervals(maps, masks, np.array([0, 0, 0, 1, 1, 1]), seed=0, n_resamples=200)
    assert ci["pixel_auroc"][0] <= pixel_auroc(maps, masks) + 2e-3 and ci["pro"][0] <= ci["pro"][1]
