"""ADer's threshold-grid pixel metrics (IoU-max, F1-max over a fixed grid) and its mAD summary.

ADer (github.com/zhangzjn/ADer, util/metric.py at ac5f4fc, ``Evaluator.run``) scores one class's
test set at a time.  Its threshold-grid metrics, as read there (research notes: NOTES.md):

1. The class's maps are min-max normalised together: ``(m - min) / (max - min)`` over every pixel
   of every test image of the class (normal images included), in the maps' own dtype.
2. A pixel is predicted defective at threshold ``t`` when its normalised value is strictly greater
   than ``t``.  IoU-max uses the 21 thresholds ``numpy.arange(0.0, 1.0 + 1e-3, 0.05)``
   (0, 0.05, ..., 1.0 as that float64 arange produces them); the mean-over-grid metrics use the 7
   thresholds ``numpy.arange(0.2, 0.8 + 1e-3, 0.1)``.
3. Counts are pooled over all pixels of the class (not per image): ``I`` = defect pixels predicted,
   ``U`` = pixels that are defect or predicted, ``P`` = pixels predicted, ``G`` = defect pixels.
   IoU(t) = I / (U + 1e-8); F1(t) = 2 p r / (p + r + 1e-8) with p = I / (P + 1e-8), r = I / (G + 1e-8).
4. IoU-max (``mIoU_max_px``) and F1-max (``mF1_max_px``) are the maxima over the 21 thresholds.

Both are fractions in [0, 1] (ADer's tables print them x100).  Since IoU = F1 / (2 - F1) for the
same counts, IoU-max is F1-max / (2 - F1-max) up to the 1e-8 terms.

The comparison's precision: ADer compares a float32 normalised map with numpy float64 thresholds.
Under numpy < 2 (what ADer's published runs of May 2024 used) the threshold is rounded to float32
first; under numpy >= 2 the comparison is made in float64.  The two differ only for a value that
equals float32(t) where float32(t) > t (for t = 0.05, 0.1, 0.15, 0.2, 0.3, ...).  ``threshold_dtype``
picks the rule: ``"map"`` (default; numpy < 2, as ADer ran) or ``"float64"`` (the same code under
numpy >= 2).  For float64 maps the two agree.

mAD (ADer's README column, not computed in its code) is the unweighted mean of seven metrics:
image AUROC, image AP, image F1-max, pixel AUROC, pixel AP, pixel F1-max and AUPRO (IoU-max is
not part of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

ThresholdDtype = Literal["map", "float64"]

EPS = 1e-8  # ADer's Evaluator.eps, added to every denominator
# 21 thresholds 0, 0.05, ..., 1.0 (float64, as numpy's arange accumulates them)
IOU_MAX_THRESHOLDS = np.arange(0.0, 1.0 + 1e-3, 0.05)
# 7 thresholds 0.2, 0.3, ..., 0.8 of ADer's mF1/mAcc/mIoU_px_0.2_0.8_0.1 (mean over the grid)
MID_THRESHOLDS = np.arange(0.2, 0.8 + 1e-3, 0.1)

# mAD's seven parts, in this suite's metric names, and ADer's names for them
MAD_METRICS = ("image_auroc", "image_auprc", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pro")
ADER_NAMES = {
    "mAUROC_sp_max": "image_auroc",
    "mAP_sp_max": "image_auprc",
    "mF1_max_sp_max": "image_f1_max",
    "mAUROC_px": "pixel_auroc",
    "mAP_px": "pixel_ap",
    "mF1_max_px": "pixel_f1_max",
    "mAUPRO_px": "pro",
    "mIoU_max_px": "iou_max",
}


def _check(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (N, H, W), the same shape")
    if maps.size == 0:
        raise ValueError("no pixels: maps and masks are empty")
    if not np.issubdtype(maps.dtype, np.floating):
        raise ValueError(f"maps must be floating point (float32 or float64), got {maps.dtype}")
    if not np.isfinite(maps).all():
        raise ValueError("maps hold NaN or infinite values")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise ValueError("masks must be bool or 0/1")
        masks = masks.astype(bool)
    return maps, masks


def grid_counts(
    maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray, threshold_dtype: ThresholdDtype = "map"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pooled counts at each threshold of ADer's normalised-map grid.

    ``maps`` (N, H, W) float32/float64, any scale (normalised here over all N maps together);
    ``masks`` (N, H, W) bool, True = defect pixel; ``thresholds`` (T,) in [0, 1] on the normalised
    scale.  Returns ``(intersection, predicted, n_defect)``: two (T,) int64 arrays (defect pixels
    with normalised value > t; all pixels with value > t) and the number of defect pixels.
    Constant maps (max == min) predict nothing at any threshold, as ADer's 0/0 normalisation does.
    """
    maps, masks = _check(maps, masks)
    if threshold_dtype not in ("map", "float64"):
        raise ValueError(f"threshold_dtype must be 'map' or 'float64', got {threshold_dtype!r}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n_defect = int(masks.sum())
    lo, hi = maps.min(), maps.max()
    if hi == lo:
        zeros = np.zeros(len(thresholds), dtype=np.int64)
        return zeros, zeros.copy(), n_defect
    norm = (maps - lo) / (hi - lo)  # in the maps' dtype, as ADer's numpy expression
    if threshold_dtype == "float64":
        norm = norm.astype(np.float64)
        ts = thresholds
    else:
        ts = thresholds.astype(norm.dtype)
    values = np.sort(norm, axis=None)
    defect_values = np.sort(norm[masks], axis=None)
    # number of values strictly greater than t: everything right of t's rightmost insertion point
    predicted = values.size - np.searchsorted(values, ts, side="right")
    intersection = defect_values.size - np.searchsorted(defect_values, ts, side="right")
    return intersection.astype(np.int64), predicted.astype(np.int64), n_defect


def iou_curve(
    maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray = IOU_MAX_THRESHOLDS,
    threshold_dtype: ThresholdDtype = "map",
) -> np.ndarray:
    """Pooled IoU of "normalised map > t" with the masks at each threshold, (T,) float64 in [0, 1]."""
    inter, pred, n_defect = grid_counts(maps, masks, thresholds, threshold_dtype)
    union = n_defect + pred - inter
    return inter / (union + EPS)


def f1_curve(
    maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray = IOU_MAX_THRESHOLDS,
    threshold_dtype: ThresholdDtype = "map",
) -> np.ndarray:
    """Pooled F1 (Dice) of "normalised map > t" with the masks at each threshold, (T,) float64 in [0, 1]."""
    inter, pred, n_defect = grid_counts(maps, masks, thresholds, threshold_dtype)
    precision = inter / (pred + EPS)
    recall = inter / (n_defect + EPS)
    return 2 * precision * recall / (precision + recall + EPS)


def iou_max(maps: np.ndarray, masks: np.ndarray, threshold_dtype: ThresholdDtype = "map") -> float:
    """ADer's IoU-max (``mIoU_max_px``) of one class: the best pooled IoU over 21 fixed thresholds.

    ``maps`` (N, H, W) float anomaly maps of the class's whole test set (normal images included),
    any scale; ``masks`` (N, H, W) bool.  Returns a fraction in [0, 1]; 0 when the class has no
    defect pixel or constant maps.  See the module docstring for the rule and ``threshold_dtype``.
    """
    return float(iou_curve(maps, masks, IOU_MAX_THRESHOLDS, threshold_dtype).max())


def f1_max_grid(maps: np.ndarray, masks: np.ndarray, threshold_dtype: ThresholdDtype = "map") -> float:
    """ADer's pixel F1-max (``mF1_max_px``): the best pooled F1 over the same 21 thresholds, in [0, 1]."""
    return float(f1_curve(maps, masks, IOU_MAX_THRESHOLDS, threshold_dtype).max())


def mad(values: Mapping[str, float]) -> float:
    """ADer's mAD: the unweighted mean of the seven metrics of ``MAD_METRICS``.

    ``values`` maps this suite's names (``image_auroc``, ..., ``pro``) or ADer's (``mAUROC_sp_max``,
    ..., ``mAUPRO_px``) to numbers, all fractions or all percent (the mean keeps the unit); other
    keys (IoU-max, the 0.2-0.8 grid metrics) are not part of mAD and are ignored.  ADer's tables
    give it for each method and benchmark from the class-averaged metrics, which equals the mean
    over classes of each class's mAD.
    """
    named = {ADER_NAMES.get(k, k): float(v) for k, v in values.items()}
    missing = [m for m in MAD_METRICS if m not in named]
    if missing:
        raise KeyError(f"mAD needs all seven metrics; missing {missing}")
    parts = [named[m] for m in MAD_METRICS]
    if not all(np.isfinite(parts)):
        raise ValueError(f"mAD of non-finite values: {dict(zip(MAD_METRICS, parts))}")
    return float(np.mean(parts))
