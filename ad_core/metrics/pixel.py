"""Pixel-level metrics: pixel AUROC and PRO (per-region overlap), docs/protocol.md §7.

PRO follows the MVTec AD evaluation protocol exactly: regions are the 8-connected
components of each ground-truth mask; at a threshold t, FPR = false-positive pixels / all
non-defect pixels over all images (normal images included) and PRO = mean over regions of
the fraction of the region's pixels with score >= t.  The curve is exact: one sort, every
distinct score one point (ties form one point), starting at (0, 0).  The area up to FPR
0.3 (trapezoids, the curve interpolated linearly at 0.3) divided by 0.3 is the score.
Hand-written on purpose: several libraries' AUPRO approximations drift from this.

Pixel AP and F1-max (``pixel_scores``) come from the same sort: AP as scikit-learn's
``average_precision_score``, F1-max the best F1 over all distinct thresholds "score >= t".
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from skimage.measure import label as label_regions

from ad_core.errors import UndefinedMetricError
from ad_core.thresholds import check_scores

FPR_LIMIT = 0.3

# numpy >= 2 names it trapezoid; 1.x (which pyproject admits) only has trapz
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def check_maps(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps, masks as bool), checked: both (N, H, W) of one shape, masks binary, scores finite (ValueError)."""
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(
            f"anomaly maps {maps.shape} and masks {masks.shape} must both be (N, H, W) with "
            "the same shape (metrics are computed at the model resolution)."
        )
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be binary (bool or 0/1).")
        masks = masks.astype(bool)
    check_scores(maps, "anomaly maps")
    return maps, masks


class _Counts(NamedTuple):
    """Cumulative counts at every distinct score, descending, each (n_distinct,)."""

    tp: np.ndarray  # int64: defect pixels with score >= t
    fp: np.ndarray  # int64: normal pixels with score >= t
    pro: np.ndarray  # float64: mean over regions of the overlap at t
    n_pos: int
    n_neg: int


def _counts(maps: np.ndarray, masks: np.ndarray) -> _Counts:
    """The one sort: counts of the threshold "score >= t" at every distinct score t.

    At the last pixel of each run of equal scores the cumulative counts are those of the
    threshold "score >= t", whatever the order within the run, so an unstable sort gives
    the same TP and FP exactly (PRO's float sums up to their last-bit rounding; one
    machine's sort is deterministic, so runs repeat exactly).
    """
    maps, masks = check_maps(maps, masks)
    n_pos = int(masks.sum())
    n_neg = masks.size - n_pos
    if n_pos == 0:
        raise UndefinedMetricError("Pixel AUROC and PRO are undefined: the ground truth has no anomalous pixel "
                                   "(no anomalous region).")
    if n_neg == 0:
        raise UndefinedMetricError("Pixel AUROC and PRO are undefined: the ground truth has only anomalous "
                                   "pixels (FPR has no denominator).")
    labelled = [label_regions(m, connectivity=2) for m in masks]  # 8-connected regions, as PRO defines them
    sizes = [np.bincount(r.ravel()) for r in labelled]
    n_regions = sum(len(s) - 1 for s in sizes)
    region_weight = np.empty(masks.shape, dtype=np.float64)
    for i, (regions, size) in enumerate(zip(labelled, sizes)):
        inv = np.zeros(len(size), dtype=np.float64)
        inv[1:] = 1.0 / (n_regions * size[1:])
        region_weight[i] = inv[regions]

    scores = maps.ravel()
    order = np.argsort(scores)[::-1]  # descending; ties are summed whole below, so any sort will do
    s_sorted = scores[order]
    # last index of each run of equal scores: all tied pixels cross the threshold together
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    tp = np.cumsum(masks.ravel()[order], dtype=np.int64)[ends]
    fp = ends + 1 - tp
    pro = np.cumsum(region_weight.ravel()[order])[ends]
    return _Counts(tp, fp, pro, n_pos, n_neg)


def _curves_of(c: _Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    zero = np.zeros(1)
    return (np.concatenate([zero, c.fp / c.n_neg]), np.concatenate([zero, c.tp / c.n_pos]),
            np.concatenate([zero, c.pro]))


def _curves(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, pro) at every distinct score, descending, each (n_distinct + 1,) from 0."""
    return _curves_of(_counts(maps, masks))


def pixel_scores(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> dict[str, float]:
    """Pixel AUROC, PRO to ``fpr_limit``, pixel AP and pixel F1-max from one sort of the pixels.

    maps (N, H, W) float scores, masks (N, H, W) bool; all pixels of all images pooled.
    ``pixel_ap``: scikit-learn's ``average_precision_score``, sum over distinct thresholds of
    (R_n - R_{n-1}) P_n; ``pixel_f1_max``: max over distinct thresholds "score >= t" of F1.
    Hand-written rather than scikit-learn's so that all four share PRO's sort; tests hold them
    equal to scikit-learn's values.  Undefined (:class:`UndefinedMetricError`) without both
    defect and normal pixels.
    """
    c = _counts(maps, masks)
    fpr, tpr, pro = _curves_of(c)
    predicted = c.tp + c.fp  # > 0 at every distinct score
    recall_gain = np.diff(c.tp, prepend=0)
    return {
        "pixel_auroc": float(_trapezoid(tpr, fpr)),
        "pro": area_to_limit(fpr, pro, fpr_limit),
        "pixel_ap": float(np.sum(recall_gain * (c.tp / predicted)) / c.n_pos),
        # F1 = 2PR / (P + R) = 2 TP / (predicted + positives): exact counts, one rounding
        "pixel_f1_max": float(np.max(2 * c.tp / (predicted + c.n_pos))),
    }


def pixel_metrics(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> tuple[float, float]:
    """(pixel AUROC, PRO to ``fpr_limit``) from one sort of the pixels: what every scenario reports."""
    s = pixel_scores(maps, masks, fpr_limit)
    return s["pixel_auroc"], s["pro"]


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC over all pixels of all images (normal images included); ties count one half.

    Hand-written rather than scikit-learn's ``roc_auc_score`` so that it shares its sort with
    PRO (``pixel_metrics``); a test holds it equal to scikit-learn's value.
    """
    fpr, tpr, _ = _curves(maps, masks)
    return float(_trapezoid(tpr, fpr))


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact PRO curve: (fpr, pro), both (n_distinct_scores + 1,), from (0, 0)."""
    fpr, _, pro = _curves(maps, masks)
    return fpr, pro


def area_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float = FPR_LIMIT) -> float:
    """Trapezoid area of the curve on [0, limit], interpolated at ``limit``, divided by it."""
    if not 0 < limit <= 1:
        raise ValueError(f"FPR limit must be in (0, 1], got {limit}.")
    idx = int(np.searchsorted(fpr, limit, side="right"))  # points with fpr <= limit
    x, y = fpr[:idx], pro[:idx]
    if x[-1] < limit:  # fpr reaches 1 at the lowest threshold, so idx < len(fpr) here
        x0, x1, y0, y1 = fpr[idx - 1], fpr[idx], pro[idx - 1], pro[idx]
        x = np.append(x, limit)
        y = np.append(y, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    return float(_trapezoid(y, x) / limit)


def pro_score(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``: 1 is perfect, random ~0.15."""
    fpr, pro = pro_curve(maps, masks)
    return area_to_limit(fpr, pro, fpr_limit)
