"""MVTec AD 2's pixel measures (Heckler-Kram et al. 2025, arXiv 2503.21622): AU-PRO at FPR 0.05 and SegF1.

Arrays in, numbers out; nothing here reads files.  The definitions, their sources and what could not be
verified are in docs/official_measures.md (summary below); tests/test_official_mvtec_ad2.py holds the numbers
to MVTec's own evaluation code run on the fixture in tests/data/official/mvtec_ad2/.

AU-PRO@0.05 (``au_pro``): the exact PRO curve of ``ad_core.metrics.pixel`` (regions = 8-connected components of
each mask; FPR over every normal pixel of every image, normal images included; PRO = mean over all regions of the
share of the region's pixels scoring >= t; every distinct score one point, tied pixels crossing together),
integrated by trapezoids from 0 to the limit (the curve interpolated linearly at the limit) and divided by the
limit.  This is what MVTec's evaluation code (``pro_curve_util.compute_pro`` + ``generic_util.trapezoid``) computes,
up to its float32 FPR values (differences ~1e-10 on the fixture).

SegF1 (``seg_f1``): F1 of the binary maps "score > threshold" against the masks, the pixels of all images pooled
(one TP, FP and FN count for the whole test set, normal images adding false positives only):
2 TP / (2 TP + FP + FN).  The threshold comes from normal validation maps only: ``validation_threshold`` is the
baseline MVTec's upload checker names, mean + 3 standard deviations (population) of all validation pixel scores.

float16: the server takes float16 TIFFs; ``as_submitted`` gives the maps it would score.  Both measures depend
only on the order of the scores (AU-PRO) or on which side of the threshold they fall (SegF1), so the cast changes
a result only where it merges distinct scores into ties or moves a score across the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ad_core.errors import UndefinedMetricError
from ad_core.metrics.pixel import area_to_limit, check_maps, pro_curve
from ad_core.thresholds import check_scores

AU_PRO_LIMIT = 0.05  # MVTec AD 2's FPR integration limit
SEG_F1_SIGMAS = 3.0  # mean + 3 sd of the validation scores: the baseline of MVTec's upload checker


def au_pro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = AU_PRO_LIMIT) -> float:
    """Normalised area under the exact PRO curve from FPR 0 to ``fpr_limit``, in [0, 1].

    maps: (N, H, W) real anomaly scores (any float dtype, float16 included; higher = more anomalous).
    masks: (N, H, W) bool (or 0/1) ground truth, True = defect; a normal image has an all-False mask.
    fpr_limit: the FPR integration limit in (0, 1]; 0.05 for MVTec AD 2, 0.3 gives ``pixel.pro_score``.
    Undefined (:class:`UndefinedMetricError`) without a defect pixel or without a normal pixel.
    """
    fpr, pro = pro_curve(maps, masks)
    return area_to_limit(fpr, pro, fpr_limit)


def validation_threshold(validation_maps: np.ndarray | Sequence[np.ndarray], sigmas: float = SEG_F1_SIGMAS) -> float:
    """SegF1's threshold from normal validation maps: mean + ``sigmas`` * standard deviation of all their pixels.

    validation_maps: (N, H, W) array, or a sequence of 2-d maps of any sizes (anomaly scores of defect-free
    validation images, as the model produces them or as submitted).  All pixels are pooled; mean and population
    standard deviation (ddof 0, numpy's default) in float64.  Returns the threshold in score units.
    """
    arrays = [validation_maps] if isinstance(validation_maps, np.ndarray) else list(validation_maps)
    if not arrays:
        raise ValueError("validation maps: none given (the threshold needs normal validation maps).")
    scores = np.concatenate([check_scores(a, "validation maps") for a in arrays])
    if scores.size == 0:
        raise ValueError("validation maps: no pixel (the threshold needs normal validation maps).")
    return float(np.mean(scores) + sigmas * np.std(scores))


def binarize(maps: np.ndarray, threshold: float) -> np.ndarray:
    """The binary maps SegF1 scores: (N, H, W) bool, True where score > ``threshold`` (a score equal to it is normal).

    As 0/255 uint8 (``binarize(...) * np.uint8(255)``) they are the server's ``anomaly_images_thresholded`` PNGs.
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}.")
    return np.asarray(maps, dtype=np.float64) > threshold


def seg_f1(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """Pixel F1 of "score > threshold" over all pixels of all images pooled, in [0, 1].

    maps: (N, H, W) real anomaly scores (or binary maps 0/1 with a threshold in [0, 1)).
    masks: (N, H, W) bool (or 0/1) ground truth, True = defect; normal images have all-False masks and add
    false positives only.  threshold: in score units, e.g. ``validation_threshold`` of the validation normals.
    F1 = 2 TP / (2 TP + FP + FN) from exact integer counts.  Undefined (:class:`UndefinedMetricError`) when the
    masks hold no defect pixel (0/0 without any prediction).
    """
    maps, masks = check_maps(maps, masks)
    predicted = binarize(maps, threshold)
    tp = int(np.count_nonzero(predicted & masks))
    fp = int(np.count_nonzero(predicted & ~masks))
    fn = int(np.count_nonzero(~predicted & masks))
    if tp + fn == 0:
        raise UndefinedMetricError("SegF1 is undefined: the ground truth has no anomalous pixel.")
    return 2 * tp / (2 * tp + fp + fn)


def as_submitted(maps: np.ndarray) -> np.ndarray:
    """The maps as MVTec AD 2's server reads them: cast to float16 (its upload format), returned as float64.

    A score beyond float16's range (|s| > 65504) would become infinite: refused with a clear error.
    """
    maps = np.asarray(maps)
    check_scores(maps, "anomaly maps")
    with np.errstate(over="ignore"):
        half = maps.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError("anomaly maps: a score is beyond float16's range (|s| > 65504); rescale the maps before "
                         "writing them in the server's float16 format.")
    return half.astype(np.float64)
