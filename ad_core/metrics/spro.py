"""sPRO (saturated per-region overlap) and its normalised area: MVTec LOCO AD's localization measure.

As MVTec's evaluation scripts for the dataset define it (``mvtec_loco_ad_evaluation`` 2.0; sources and
files in docs/official_measures.md).  A *region* is one ground-truth channel (one PNG of an
image's ground-truth folder): any set of pixels -- not split into connected components -- that may
overlap other regions.  Each region has a saturation area ``s`` in pixels (``saturation_pixels``): at a
threshold ``t`` its sPRO is ``min(TP / s, 1)``, TP = its pixels with score ``> t``; the curve's y is the
mean over all regions of all images, its x the FPR: pixels outside every region of their image (all
pixels of normal images) with score ``> t``, over all such pixels.  The score is the trapezoid area of
the curve from FPR 0 to ``fpr_limit`` (interpolated linearly there), divided by ``fpr_limit``.

Two curves:
* exact (``thresholds=None``): every distinct score one point ("score >= s", ties one point), from (0, 0),
  by one sort as ``ad_core.metrics.pixel``'s PRO;
* the official script's (``official_thresholds``): it does not take every score but ~1000 thresholds it
  picks by refinement (50 from the sorted scores, then up to 10 rounds that insert thresholds where the
  pooled curve of all test images jumps by more than ``max_distance``), and joins them by straight lines,
  so its areas differ from the exact ones (up to 4e-5 on the test fixture).  ``loco_auc_spro`` reproduces
  the script's numbers: thresholds picked once on all test images, then each anomaly kind's curve
  (its images + the good ones) at those thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ad_core.data.records import open_regular, parse_json, refuse
from ad_core.errors import UndefinedMetricError
from ad_core.metrics.pixel import area_to_limit
from ad_core.thresholds import check_scores

FPR_LIMIT = 0.05  # the limit the script's print_metrics.py reports by default (the paper's: not checked here)
OFFICIAL_FPR_LIMITS = (0.01, 0.05, 0.1, 0.3, 1.0)  # the limits the script computes (its MAX_FPRS)
CURVE_MAX_DISTANCE = 0.001  # the script's --curve_max_distance default
GOOD = "good"  # the kind of the normal test images

# the script's threshold refinement (src/aggregation.py): its fixed settings
_INITIAL = 50  # first thresholds: max + eps, 48 scores at equal ranks, min - eps
_EPSILON = 1e-6
_MAX_SAMPLED = 10_000_000  # above this many pixels the first thresholds come from a random sample
_MIN_QUERIES, _MAX_QUERIES, _STEPS = 20, 100, 10


class DefectType(NamedTuple):
    """One entry of a LOCO object's ``defects_config.json``."""

    name: str
    pixel_value: int  # 1..255: the value of this type's pixels in a ground-truth PNG
    saturation_threshold: int | float  # pixels (int) when absolute, a fraction of the area in (0, 1] when relative
    relative: bool


class Region(NamedTuple):
    """One ground-truth region (channel) of an image: its pixels and its saturation area."""

    mask: np.ndarray  # (H, W) bool
    saturation: float  # pixels: sPRO = min(TP / saturation, 1)
    defect: str = ""


# per image its regions: ``Region``s or plain (mask (H, W) bool, saturation pixels) pairs; [] for a good image
Regions = Sequence[Sequence["Region | tuple[np.ndarray, float]"]]


def saturation_pixels(area: int, defect: DefectType) -> int:
    """A region's saturation area in pixels, as the script computes it: ``int(fraction * area)`` (rounded
    down) when relative, ``min(threshold, area)`` when absolute."""
    if defect.relative:
        return int(defect.saturation_threshold * area)
    return int(min(defect.saturation_threshold, area))


def region_of_channel(channel: np.ndarray, defects: Mapping[int, DefectType]) -> Region:
    """The region of one ground-truth PNG: ``channel`` (H, W) integers, 0 outside the defect and one
    defect type's pixel value inside (``defects``: ``read_defects_config``)."""
    channel = np.asarray(channel)
    if channel.ndim != 2 or not np.issubdtype(channel.dtype, np.integer):
        raise ValueError(f"a ground-truth channel is a 2-d integer image, got {channel.dtype} {channel.shape}")
    values = np.unique(channel)
    positive = values[values != 0]
    if positive.size != 1 or values.min() < 0:
        raise ValueError(f"a ground-truth channel holds 0 and one defect value, got values {values[:6].tolist()}")
    value = int(positive[0])
    if value not in defects:
        raise ValueError(f"ground-truth pixel value {value} is no defect type of the defects config "
                         f"(it has {sorted(defects)})")
    defect = defects[value]
    mask = channel == value
    return Region(mask, float(saturation_pixels(int(mask.sum()), defect)), defect.name)


def read_defects_config(path: str | Path) -> dict[int, DefectType]:
    """A LOCO object's ``defects_config.json`` as {pixel value: DefectType}; FileFormatError (one line naming
    the file) when it is not a list of objects with exactly the script's four fields, of its types."""
    path = Path(path)
    fix = "restore the object's defects_config.json from the MVTec LOCO AD dataset"
    try:
        value = parse_json(path, open_regular(path), fix)
    except FileNotFoundError:
        raise refuse(path, "does not exist", "give the object's folder of the MVTec LOCO AD dataset") from None
    if not isinstance(value, list) or not value:
        raise refuse(path, "is not a non-empty JSON list of defect types", fix)
    fields = {"defect_name", "pixel_value", "saturation_threshold", "relative_saturation"}
    out: dict[int, DefectType] = {}
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) != fields:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise refuse(path, f"entry {i} must have exactly the fields {sorted(fields)} (got {got})", fix)
        name, pixel, threshold, relative = (entry[k] for k in
                                            ("defect_name", "pixel_value", "saturation_threshold",
                                             "relative_saturation"))
        if not isinstance(name, str) or not name:
            problem = "defect_name must be a non-empty string"
        elif type(pixel) is not int or not 1 <= pixel <= 255:
            problem = f"pixel_value must be an integer in 1..255 (got {pixel!r})"
        elif type(relative) is not bool:
            problem = f"relative_saturation must be true or false (got {relative!r})"
        elif relative and (type(threshold) is not float or not 0 < threshold <= 1):
            problem = f"a relative saturation_threshold must be a float in (0, 1] (got {threshold!r})"
        elif not relative and (type(threshold) is not int or threshold < 1):
            problem = f"an absolute saturation_threshold must be a whole number of pixels >= 1 (got {threshold!r})"
        elif pixel in out:
            problem = f"pixel_value {pixel} is given twice"
        else:
            out[pixel] = DefectType(name, pixel, threshold, relative)
            continue
        raise refuse(path, f"entry {i}: {problem}", fix)
    return out


# -- the curve ------------------------------------------------------------------------------------
class _Pixels(NamedTuple):
    """Checked inputs: scores (n,) float64 of all pixels, image by image; per region its flat pixel
    indices (into scores) and saturation; the negatives' mask (n,) bool."""

    scores: np.ndarray
    region_pixels: list[np.ndarray]
    saturation: np.ndarray
    negative: np.ndarray


def _pixels(maps: np.ndarray, regions: Regions) -> _Pixels:
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"anomaly maps must be (N, H, W), got {maps.shape}")
    if len(regions) != len(maps):
        raise ValueError(f"{len(maps)} anomaly maps but regions for {len(regions)} images")
    scores = check_scores(maps, "anomaly maps")
    size = maps.shape[1] * maps.shape[2]
    negative = np.ones(scores.size, dtype=bool)
    region_pixels, saturation = [], []
    for i, image_regions in enumerate(regions):
        for j, region in enumerate(image_regions):
            mask, sat = np.asarray(region[0]), float(region[1])
            if mask.shape != maps.shape[1:]:
                raise ValueError(f"region {j} of image {i} is {mask.shape}, its map {maps.shape[1:]}: the "
                                 "script reads maps of the ground truth's size (no resizing)")
            if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
                raise ValueError(f"region {j} of image {i}: masks must be binary (bool or 0/1)")
            idx = i * size + np.flatnonzero(mask)
            if idx.size == 0:
                raise ValueError(f"region {j} of image {i} is empty (a ground-truth channel has defect pixels)")
            if not (np.isfinite(sat) and sat > 0):
                raise ValueError(f"region {j} of image {i}: saturation must be a positive number of pixels, "
                                 f"got {sat}")
            negative[idx] = False
            region_pixels.append(idx)
            saturation.append(sat)
    if not region_pixels:
        raise UndefinedMetricError("sPRO is undefined: no image has a ground-truth region.")
    if not negative.any():
        raise UndefinedMetricError("sPRO is undefined: every pixel is in a region (FPR has no denominator).")
    return _Pixels(scores, region_pixels, np.array(saturation), negative)


def _exact_curve(p: _Pixels) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, spro) at every distinct score, descending, from (0, 0): one sort.

    A region's sPRO after its k-th pixel in the sort is min(k, s) / s whatever the order of tied pixels,
    so each region pixel adds (min(k, s) - min(k - 1, s)) / s, summed once over the sorted pixels."""
    order = np.argsort(p.scores)[::-1]
    s_sorted = p.scores[order]
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))  # last pixel of each tie run
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    gain = np.zeros(order.size)
    for idx, sat in zip(p.region_pixels, p.saturation):
        k = np.arange(idx.size + 1, dtype=np.float64)
        gain[np.sort(rank[idx])] += np.diff(np.minimum(k, sat)) / sat  # a region's pixels are distinct
    n_neg = int(p.negative.sum())
    fp = np.cumsum(p.negative[order], dtype=np.int64)[ends]
    spro = np.cumsum(gain)[ends] / len(p.region_pixels)
    zero = np.zeros(1)
    return np.concatenate([zero, fp / n_neg]), np.concatenate([zero, spro])


class _Sorted(NamedTuple):
    """Per region its sorted scores and saturation, and the negatives' sorted scores."""

    regions: list[np.ndarray]
    saturation: np.ndarray
    negatives: np.ndarray


def _sorted(p: _Pixels) -> _Sorted:
    return _Sorted([np.sort(p.scores[idx]) for idx in p.region_pixels], p.saturation,
                   np.sort(p.scores[p.negative]))


def _curve_at(s: _Sorted, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, mean sPRO) at each threshold t, "score > t" as the script binarises, in the given order."""
    above = [r.size - np.searchsorted(r, thresholds, side="right") for r in s.regions]
    spro = np.mean([np.minimum(tp / sat, 1.0) for tp, sat in zip(above, s.saturation)], axis=0)
    fp = s.negatives.size - np.searchsorted(s.negatives, thresholds, side="right")
    return fp / s.negatives.size, spro


def spro_curve(maps: np.ndarray, regions: Regions,
               thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sPRO curve (fpr, spro), both 1-d, FPR ascending.

    maps (N, H, W) float scores; regions: per image a list of (mask (H, W) bool, saturation pixels) --
    ``Region`` or plain pairs, empty for a normal image; masks of one image may overlap.
    ``thresholds=None``: exact, every distinct score a point, from (0, 0).  Else the points at these
    thresholds (pixels with score > t positive), sorted descending first (e.g. ``official_thresholds``).
    """
    p = _pixels(maps, regions)
    if thresholds is None:
        return _exact_curve(p)
    t = np.sort(check_scores(thresholds, "thresholds"))[::-1]
    return _curve_at(_sorted(p), t)


def auc_spro(maps: np.ndarray, regions: Regions,
             fpr_limit: float = FPR_LIMIT, thresholds: np.ndarray | None = None) -> float:
    """Area under the sPRO curve from FPR 0 to ``fpr_limit``, divided by it: in [0, 1], 1 is perfect.

    Inputs as ``spro_curve``; exact when ``thresholds`` is None.  Given thresholds must reach both ends of
    the curve (FPR 0 and 1: one at or above the highest score, one below the lowest), as the script's do."""
    fpr, spro = spro_curve(maps, regions, thresholds)
    if fpr[0] != 0 or fpr[-1] != 1:
        raise ValueError(f"the thresholds give FPRs {fpr[0]:.4g} .. {fpr[-1]:.4g}: the curve must run from 0 to 1 "
                         "(a threshold at or above the highest score and one below the lowest)")
    return area_to_limit(fpr, spro, fpr_limit)


def official_thresholds(maps: np.ndarray, regions: Regions,
                        max_distance: float = CURVE_MAX_DISTANCE,
                        rng: np.random.Generator | int | None = None) -> np.ndarray:
    """The thresholds the official script picks for these test images, descending (float64, ~50-1050).

    Inputs as ``spro_curve``: all test images of an object (good ones included; the script picks once
    for all kinds).  Its procedure (src/aggregation.py, MetricsAggregator): the maximum score + 1e-6, 48
    scores at equal ranks of all sorted scores, the minimum - 1e-6; then up to 10 rounds: between
    neighbouring thresholds whose pooled (mean sPRO, FPR) points lie more than ``max_distance`` apart and
    span a triangle of area above max_distance**2 / 4, the (at most 100) farthest pairs get 1 + k
    evenly spaced new thresholds, k sharing out a total of 20 queries by distance.  Above 10**7 pixels the
    48 come from a random sample of each image (``rng``; the script's is unseeded, so its numbers vary there).
    ±1e-6 in float64, as under the script's numpy 1.x (numpy 2 adds it in the maps' dtype).
    """
    p = _pixels(maps, regions)
    s = _sorted(p)
    n_images = len(regions)
    if p.scores.size <= _MAX_SAMPLED:
        sample = np.sort(p.scores)
    else:
        per_image = p.scores.size // n_images
        gen = np.random.default_rng(rng)
        sample = np.sort(np.concatenate([gen.choice(chunk, size=_MAX_SAMPLED // n_images, replace=False)
                                         for chunk in p.scores.reshape(n_images, per_image)]))
    picked = sample[np.linspace(0, sample.size - 1, num=_INITIAL, dtype=int)[1:-1]]
    queries = [float(p.scores.max()) + _EPSILON, *picked[::-1].tolist(), float(p.scores.min()) - _EPSILON]

    def points(t: Sequence[float]) -> list[np.ndarray]:
        fpr, spro = _curve_at(s, np.asarray(t, dtype=np.float64))
        return [np.array(pair) for pair in zip(spro, fpr)]

    values = points(queries)
    max_area = 0.25 * max_distance**2
    for _ in range(_STEPS):
        wide = []
        for i in range(len(queries) - 1):
            step = values[i] - values[i + 1]
            distance = np.linalg.norm(step)
            if distance > max_distance and 0.5 * np.prod(step) > max_area:
                wide.append((distance, queries[i], queries[i + 1]))
        if not wide:
            break
        wide = sorted(wide, key=lambda w: w[0], reverse=True)[:_MAX_QUERIES]
        spare, total = max(_MIN_QUERIES - len(wide), 0), sum(w[0] for w in wide)
        new: list[float] = []
        for distance, left, right in wide:
            extra = int(np.round(distance / total * spare))
            new.extend(np.linspace(left, right, num=3 + extra)[1:-1])
            spare -= extra
            total -= distance
        merged_q, merged_v = queries + new, values + points(new)
        order = np.argsort(merged_q)[::-1]
        queries, values = [merged_q[i] for i in order], [merged_v[i] for i in order]
    return np.array(queries, dtype=np.float64)


def loco_auc_spro(maps: np.ndarray, regions: Regions, kinds: Sequence[str],
                  fpr_limits: Sequence[float] = OFFICIAL_FPR_LIMITS, exact: bool = False,
                  max_distance: float = CURVE_MAX_DISTANCE) -> dict[str, dict[float, float]]:
    """AUC-sPRO per anomaly kind at each limit, as the official script reports them ("localization").

    maps, regions as ``spro_curve`` for all test images of one object; kinds (N,): each image's test folder
    ("good", "logical_anomalies", "structural_anomalies").  Each kind other than "good" is scored on its
    images together with all good ones; "mean" is the mean over those kinds.  ``exact=False``: the
    script's thresholds (``official_thresholds``, picked once on all images); True: each curve exact.
    """
    kinds = list(kinds)
    if len(kinds) != len(regions):
        raise ValueError(f"{len(kinds)} kinds for {len(regions)} images")
    good = [i for i, k in enumerate(kinds) if k == GOOD]
    if len(good) == len(kinds):
        raise ValueError("loco_auc_spro needs images of an anomaly kind besides the good ones")
    thresholds = None if exact else official_thresholds(maps, regions, max_distance)
    out: dict[str, dict[float, float]] = {}
    for kind in sorted(set(kinds) - {GOOD}):
        take = [i for i, k in enumerate(kinds) if k == kind] + good
        fpr, spro = spro_curve(np.asarray(maps)[take], [regions[i] for i in take], thresholds)
        out[kind] = {limit: area_to_limit(fpr, spro, limit) for limit in fpr_limits}
    out["mean"] = {limit: float(np.mean([out[k][limit] for k in out])) for limit in fpr_limits}
    return out
