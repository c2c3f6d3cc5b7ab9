"""Image and pixel metrics (docs/protocol.md §7), PRO against its exact definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import label as nd_label
from sklearn.metrics import roc_auc_score

from ad_core.errors import UndefinedMetricError
from ad_core.metrics import image_metrics, macro_mean, pixel_auroc, pixel_metrics, pro_curve, pro_score
from ad_core.metrics.image import image_auroc

pytestmark = pytest.mark.fast


def brute_force_pro(maps, masks, limit=0.3):
    """Threshold by threshold, region by region: the definition, written plainly."""
    regions = []
    for m in masks:
        lab, n = nd_label(m, structure=np.ones((3, 3)))  # 8-connectivity
        regions += [(len(regions), lab == r, m) for r in range(1, n + 1)]
    neg = ~masks
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        fpr = np.sum((maps >= t) & neg) / neg.sum()
        overlaps = []
        for i, m in enumerate(masks):
            lab, n = nd_label(m, structure=np.ones((3, 3)))
            for r in range(1, n + 1):
                region = lab == r
                overlaps.append(np.sum(maps[i][region] >= t) / region.sum())
        points.append((fpr, np.mean(overlaps)))
    x, y = np.array(points).T
    keep = x <= limit
    xs, ys = list(x[keep]), list(y[keep])
    if xs[-1] < limit:
        j = np.argmax(x > limit)
        xs.append(limit)
        ys.append(y[j - 1] + (y[j] - y[j - 1]) * (limit - x[j - 1]) / (x[j] - x[j - 1]))
    area = sum((xs[k + 1] - xs[k]) * (ys[k + 1] + ys[k]) / 2 for k in range(len(xs) - 1))
    return area / limit


small_cases = st.tuples(st.integers(1, 3), st.integers(3, 7), st.integers(3, 7), st.integers(0, 2**32 - 1),
                        st.booleans())


def _case(n, h, w, seed, quantised):
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) < 0.3
    masks[0, 0, 0] = True  # at least one region
    masks[-1, -1, -1] = False  # at least one normal pixel
    maps = rng.random((n, h, w)) + 0.5 * masks
    if quantised:  # many ties
        maps = np.round(maps * 4) / 4
    return maps, masks


@settings(max_examples=80, deadline=None)
@given(small_cases)
def test_pro_equals_brute_force_reference(case):
    maps, masks = _case(*case)
    assert pro_score(maps, masks) == pytest.approx(brute_force_pro(maps, masks), abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(small_cases)
def test_pro_in_unit_interval_and_invariant_to_increasing_transforms(case):
    maps, masks = _case(*case)
    p = pro_score(maps, masks)
    assert 0.0 <= p <= 1.0 + 1e-12
    assert pro_score(np.exp(3 * maps) - 7, masks) == pytest.approx(p, abs=1e-9)
    assert pro_score(maps ** 3, masks) == pytest.approx(p, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(small_cases)
def test_perfect_map_gives_one(case):
    _, masks = _case(*case)
    assert pro_score(masks.astype(float), masks) == pytest.approx(1.0, abs=1e-9)


def test_random_scores_give_about_0_15():
    rng = np.random.default_rng(0)
    masks = np.zeros((30, 64, 64), bool)
    for i in range(15):
        y, x = rng.integers(0, 48, 2)
        masks[i, y:y + rng.integers(4, 16), x:x + rng.integers(4, 16)] = True
    p = pro_score(rng.random(masks.shape), masks)
    assert p == pytest.approx(0.15, abs=0.01)


def test_regions_are_8_connected():
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True  # diagonal neighbours: one region, not two
    maps = np.zeros((1, 6, 6))
    maps[0, 1, 1] = 1.0  # half of the one region found; with 4-connectivity PRO would differ
    fpr, pro = pro_curve(maps, masks)
    assert pro[1] == pytest.approx(0.5)


def test_each_region_counts_equally_whatever_its_size():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :5, :5] = True  # 25 px
    masks[1, 0, 0] = True  # 1 px
    maps = np.zeros((2, 10, 10))
    maps[1, 0, 0] = 1.0  # only the small region found at the top threshold
    fpr, pro = pro_curve(maps, masks)
    assert fpr[1] == 0.0 and pro[1] == pytest.approx(0.5)


def test_fpr_counts_normal_images_too():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = True
    maps = np.zeros((2, 4, 4))
    maps[1] = 1.0  # a whole normal image flagged
    fpr, _ = pro_curve(maps, masks)
    assert fpr[1] == pytest.approx(16 / 31)


def test_no_anomalous_pixel_is_undefined():
    masks = np.zeros((2, 4, 4), bool)
    with pytest.raises(UndefinedMetricError, match="no anomalous region"):
        pro_score(np.random.rand(2, 4, 4), masks)
    with pytest.raises(UndefinedMetricError, match="no anomalous pixel"):
        pixel_auroc(np.random.rand(2, 4, 4), masks)


def test_maps_checks():
    with pytest.raises(ValueError, match="same shape"):
        pro_score(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), bool))
    bad = np.zeros((1, 4, 4))
    bad[0, 1, 1] = np.nan
    m = np.zeros((1, 4, 4), bool)
    m[0, 0, 0] = True
    with pytest.raises(ValueError, match="anomaly maps contain 1 non-finite"):
        pro_score(bad, m)


def brute_force_auroc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return wins / (len(pos) * len(neg))


@given(st.integers(0, 2**32 - 1), st.integers(2, 30))
def test_image_auroc_equals_pairwise_brute_force(seed, n):
    rng = np.random.default_rng(seed)
    labels = np.r_[0, 1, rng.integers(0, 2, n)]
    scores = np.round(rng.normal(size=labels.size) + labels, 1)
    assert image_auroc(scores, labels) == pytest.approx(brute_force_auroc(scores, labels), abs=1e-12)


@given(st.integers(0, 2**32 - 1))
def test_pixel_auroc_equals_pairwise_brute_force(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((2, 5, 5)) < 0.3
    masks[0, 0, 0], masks[0, 0, 1] = True, False
    maps = np.round(rng.random((2, 5, 5)) + 0.3 * masks, 1)
    expected = brute_force_auroc(maps.ravel(), masks.ravel().astype(int))
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)


@given(small_cases)
@settings(max_examples=60, deadline=None)
def test_pixel_metrics_share_one_sort_and_equal_the_separate_definitions(case):
    """pixel_metrics' one-sort values: scikit-learn's pixel AUROC and the brute-force PRO."""
    maps, masks = _case(*case)
    auroc, pro = pixel_metrics(maps, masks)
    assert auroc == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert auroc == pixel_auroc(maps, masks) and pro == pro_score(maps, masks)
    assert pro == pytest.approx(brute_force_pro(maps, masks), abs=1e-9)


def test_pixel_metrics_undefined_without_normal_pixels():
    masks = np.ones((2, 4, 4), bool)
    with pytest.raises(UndefinedMetricError, match="only anomalous pixels"):
        pixel_metrics(np.random.rand(2, 4, 4), masks)


def test_image_metrics_at_threshold():
    scores = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    m = image_metrics(scores, labels, threshold=0.5)
    assert m.confusion == [[2, 1], [1, 2]]  # [[TN, FP], [FN, TP]]
    assert m.f1 == pytest.approx(2 / 3) and m.accuracy == pytest.approx(4 / 6)
    assert m.auroc == pytest.approx(brute_force_auroc(scores, labels))
    assert m.auprc == pytest.approx((1 + 1 + 3 / 4) / 3)  # AP: precision at each positive (0.9, 0.7, 0.4)
    assert m.to_json()["threshold"] == 0.5
    with pytest.raises(UndefinedMetricError, match="only normal"):
        image_metrics(scores, np.zeros(6, int), 0.5)


def test_macro_mean_and_absent_metrics():
    per = {"a": {"auroc": 0.8, "pro": 0.5}, "b": {"auroc": 0.6, "pro": None}}
    assert macro_mean(per) == {"auroc": pytest.approx(0.7), "pro": None}
    with pytest.raises(ValueError):
        macro_mean({})
