"""Image and pixel metrics (docs/protocol.md §7): PRO against its exact definition, AP and F1-max
against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import label as nd_label
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from ad_core.errors import UndefinedMetricError
from ad_core.metrics import image_metrics, macro_mean, pixel_metrics, pro_curve, pro_score
from ad_core.metrics.image import image_auroc, image_f1_max
from ad_core.metrics.pixel import pixel_auroc, pixel_scores
from ad_core.thresholds import f1_at

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


def sklearn_f1_max(labels, scores):
    """The maximum F1 along scikit-learn's precision-recall curve (0 where P + R = 0)."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return float(np.max(np.where(precision + recall > 0, f1, 0.0)))


@given(small_cases, st.sampled_from([0.3, 0.1, 1.0]))
@settings(max_examples=60, deadline=None)
def test_pixel_scores_equal_scikit_learn_and_pixel_metrics_bit_for_bit(case, limit):
    """One sort, four metrics: AP and F1-max as scikit-learn's, AUROC and PRO exactly pixel_metrics'."""
    maps, masks = _case(*case)
    s = pixel_scores(maps, masks, limit)
    assert set(s) == {"pixel_auroc", "pro", "pixel_ap", "pixel_f1_max"}
    assert (s["pixel_auroc"], s["pro"]) == pixel_metrics(maps, masks, limit)  # ==: bit for bit
    assert s["pixel_ap"] == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert s["pixel_f1_max"] == pytest.approx(sklearn_f1_max(masks.ravel(), maps.ravel()), abs=1e-12)


def test_pixel_ap_and_f1_max_count_tied_scores_as_one_threshold():
    # descending: defect 0.9, normal 0.8, (defect, normal) tied at 0.7, normal 0.1
    maps = np.array([0.7, 0.9, 0.1, 0.7, 0.8]).reshape(1, 1, 5)
    masks = np.array([True, True, False, False, False]).reshape(1, 1, 5)
    s = pixel_scores(maps, masks)
    assert s["pixel_ap"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)  # recall steps at 0.9 (P=1) and 0.7 (P=1/2)
    # 2/3 at 0.9 and at 0.7; splitting the tie (defect first) would invent 4/5
    assert s["pixel_f1_max"] == pytest.approx(2 / 3)
    perfect = pixel_scores(masks.astype(float), masks)
    assert perfect["pixel_ap"] == perfect["pixel_f1_max"] == 1.0


def test_pixel_scores_undefined_without_both_pixel_classes():
    with pytest.raises(UndefinedMetricError, match="no anomalous pixel"):
        pixel_scores(np.random.rand(2, 4, 4), np.zeros((2, 4, 4), bool))
    with pytest.raises(UndefinedMetricError, match="only anomalous pixels"):
        pixel_scores(np.random.rand(2, 4, 4), np.ones((2, 4, 4), bool))


@given(st.integers(0, 2**32 - 1), st.integers(0, 30), st.booleans())
@settings(max_examples=100, deadline=None)
def test_image_f1_max_equals_scikit_learn_and_the_best_threshold(seed, n, ties):
    rng = np.random.default_rng(seed)
    labels = np.r_[0, 1, rng.integers(0, 2, n)]
    scores = rng.normal(size=labels.size) + labels
    if ties:
        scores = np.round(scores, 0)
    f = image_f1_max(scores, labels)
    assert f == pytest.approx(sklearn_f1_max(labels, scores), abs=1e-12)
    y = labels.astype(bool)
    assert f == pytest.approx(max(f1_at(scores, y, t) for t in np.unique(scores)), abs=1e-12)


def test_image_f1_max_undefined_and_checked_like_auroc():
    scores = np.array([0.1, 0.4, 0.4, 0.9])
    assert image_f1_max(scores, [0, 1, 0, 1]) == pytest.approx(2 * 2 / (3 + 2))  # best tau 0.4: tp 2, 3 flagged
    with pytest.raises(UndefinedMetricError, match="only normal"):
        image_f1_max(scores, np.zeros(4, int))
    with pytest.raises(UndefinedMetricError, match="only anomalous"):
        image_f1_max(scores, np.ones(4, int))
    with pytest.raises(ValueError, match="non-finite"):
        image_f1_max(np.array([0.1, np.nan]), [0, 1])
    with pytest.raises(ValueError, match="3 entries for 4 scores"):
        image_f1_max(scores, [0, 1, 1])
