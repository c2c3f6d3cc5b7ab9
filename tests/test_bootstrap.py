"""Bootstrap statistics: vectorised metrics equal scikit-learn's, intervals behave, pairing holds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from ad_core.metrics import pro_score
from ad_core.metrics.bootstrap import (
    PixelHistograms,
    accuracy_at,
    auroc,
    average_precision,
    f1_at,
    f1_max,
    image_intervals,
    image_statistics,
    interval,
    paired_difference,
    pixel_intervals,
    split_by_label,
)
from ad_core.metrics.image import image_f1_max
from ad_core.metrics.pixel import pixel_auroc, pixel_scores
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
    assert hist.auroc(w)[0] == pytest.approx(pixel_auroc(maps, masks), abs=2e-3)
    assert hist.overlap_area(w)[0] == pytest.approx(pro_score(maps, masks), abs=1e-2)
    ci = pixel_intervals(maps, masks, np.array([0, 0, 0, 1, 1, 1]), seed=0, n_resamples=200)
    assert ci["pixel_auroc"][0] <= pixel_auroc(maps, masks) + 2e-3 and ci["pro"][0] <= ci["pro"][1]
    assert list(ci) == ["pixel_auroc", "pro", "pixel_ap", "pixel_f1_max"]
    exact = pixel_scores(maps, masks)
    for name in ("pixel_ap", "pixel_f1_max"):
        assert 0 <= ci[name][0] <= ci[name][1] <= 1
    assert hist.average_precision(w)[0] == pytest.approx(exact["pixel_ap"], abs=1e-2)
    assert hist.f1_max(w)[0] == pytest.approx(exact["pixel_f1_max"], abs=1e-2)


@settings(max_examples=100, deadline=None)
@given(score_sets)
def test_f1_max_statistic_equals_scikit_learn_and_the_point_function_on_each_resample(case):
    neg, pos = draw(*case)
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    s = np.r_[neg, pos]
    precision, recall, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore"):
        best = np.max(np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0))
    assert f1_max(neg, pos) == pytest.approx(best, abs=1e-12)
    assert f1_max(neg, pos) == pytest.approx(image_f1_max(s, y), abs=1e-12)  # the identity resample
    rng = np.random.default_rng(case[2])
    i, j = rng.integers(0, len(neg), (5, len(neg))), rng.integers(0, len(pos), (5, len(pos)))
    expected = [image_f1_max(np.r_[neg[a], pos[b]], y) for a, b in zip(i, j)]
    np.testing.assert_allclose(f1_max(neg[i], pos[j]), expected, rtol=0, atol=1e-12)  # row-wise = one by one


def test_image_intervals_add_f1_max_and_each_metric_is_its_own_seeded_interval():
    neg, pos = draw(15, 12, 3, True)
    s, y = np.r_[neg, pos], np.r_[np.zeros(15), np.ones(12)]
    ci = image_intervals(s, y, 0.3, seed=4, n_resamples=300)
    assert list(ci) == ["image_auroc", "image_auprc", "image_f1", "image_accuracy", "image_f1_max"]
    # every key draws the same resamples from its own seeded generator: adding one leaves the others as they were
    statistics = image_statistics(0.3)
    for name, stat in statistics.items():
        assert ci[name] == interval(split_by_label(s, y), stat, 4, 300)
    lo, hi = ci["image_f1_max"]
    assert 0 <= lo <= hi <= 1 and ci["image_f1"][1] <= hi  # no fixed tau beats the best one


def test_binned_pixel_ap_and_f1_max_equal_the_exact_metrics_of_the_binned_maps_on_each_resample():
    rng = np.random.default_rng(1)
    masks = np.zeros((5, 12, 12), bool)
    masks[2:, 3:7, 4:9] = True
    masks[4, 9:11, 0:2] = True
    maps = rng.random((5, 12, 12)).astype(np.float32) + 0.6 * masks
    hist = PixelHistograms(maps, masks, bins=32)
    binned = np.searchsorted(hist.edges, maps, side="right")  # each pixel's bin: the scores the histograms see
    normal, anomalous = np.array([0, 1]), np.array([2, 3, 4])
    draws = [(normal, anomalous)] + [(rng.choice(normal, 2), rng.choice(anomalous, 3)) for _ in range(6)]
    w = np.concatenate([hist.weights(a, b) for a, b in draws])
    ap, f1 = hist.average_precision(w), hist.f1_max(w)
    for r, (a, b) in enumerate(draws):  # row 0 is the identity resample
        idx = np.r_[a, b]
        exact = pixel_scores(binned[idx], masks[idx])
        assert ap[r] == pytest.approx(exact["pixel_ap"], abs=1e-12)
        assert f1[r] == pytest.approx(exact["pixel_f1_max"], abs=1e-12)
