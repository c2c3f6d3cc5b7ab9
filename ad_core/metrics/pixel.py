"""Pixel-level metrics: pixel AUROC and PRO (per-region overlap), docs/protocol.md §7.

PRO follows the MVTec AD evaluation protocol exactly: regions are the 8-connected
components of each ground-truth mask; at a threshold t, FPR = false-positive pixels / all
non-defect pixels over all images (normal images included) and PRO = mean over regions of
the fraction of the region's pixels with score >= t.  The curve is exact: one sort, every
distinct score one point (ties form one point), starting at (0, 0).  The area up to FPR
0.3 (trapezoids, the curve interpolated linearly at 0.3) divided by 0.3 is the score.
Hand-written on purpose: several libraries' AUPRO approximations drift from this.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as label_regions
from sklearn.metrics import roc_auc_score

from ad_core.errors import UndefinedMetricError
from ad_core.thresholds import check_scores

FPR_LIMIT = 0.3

# numpy >= 2 names it trapezoid; 1.x (which pyproject admits) only has trapz
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _check_maps(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC over all pixels of all images (normal images included)."""
    maps, masks = _check_maps(maps, masks)
    n_pos = int(masks.sum())
    if n_pos == 0 or n_pos == masks.size:
        raise UndefinedMetricError(
            "Pixel AUROC is undefined: the ground truth has "
            f"{'no anomalous' if n_pos == 0 else 'only anomalous'} pixels."
        )
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact PRO curve: (fpr, pro), both (n_distinct_scores + 1,), from (0, 0)."""
    maps, masks = _check_maps(maps, masks)
    region_weight = np.zeros(masks.shape, dtype=np.float64)
    n_regions = 0
    per_image: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(masks.shape[0]):
        regions = label_regions(masks[i], connectivity=2)  # 8-connectivity
        sizes = np.bincount(regions.ravel())
        per_image.append((regions, sizes))
        n_regions += len(sizes) - 1
    n_neg = int((~masks).sum())
    if n_regions == 0:
        raise UndefinedMetricError("PRO is undefined: the ground truth has no anomalous region.")
    if n_neg == 0:
        raise UndefinedMetricError("PRO is undefined: the ground truth has no normal pixel (FPR has no denominator).")
    for i, (regions, sizes) in enumerate(per_image):
        inv = np.zeros(len(sizes), dtype=np.float64)
        inv[1:] = 1.0 / (n_regions * sizes[1:])
        region_weight[i] = inv[regions]

    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]  # descending
    s_sorted = scores[order]
    fp = np.cumsum(~masks.ravel()[order], dtype=np.float64) / n_neg
    pro = np.cumsum(region_weight.ravel()[order])
    # last index of each run of equal scores: all tied pixels cross the threshold together
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    return np.concatenate([[0.0], fp[ends]]), np.concatenate([[0.0], pro[ends]])


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
