"""Bootstrap confidence intervals of the metrics (docs/protocol.md §7), and of paired differences.

``scipy.stats.bootstrap`` draws the resamples and forms the percentile interval; the test
images are resampled **stratified**: normal and anomalous images are separate samples, so
every resample keeps the set's class balance (and every metric stays defined).  The
statistics below are vectorised over resamples:
The metrics and which statistic each uses are the registry's (``ad_core.metrics.registry``, each
record's ``bootstrap``); this module holds the statistics:
- image AUROC exactly (ranks with ties averaged: the Mann-Whitney form of ``roc_auc_score``),
- AUPRC as scikit-learn's ``average_precision_score`` (ties form one step),
- F1 and accuracy at the fixed calibrated tau, and F1-max (the best F1 over every distinct
  threshold, as the exact image F1-max);
- pixel AUROC, PRO, AP and F1-max resample whole images: each image's pixels are binned once into shared
  score bins (``PIXEL_BINS`` quantile edges of all the maps' values), so a resample is a sum of
  per-image histograms.  The interval is that of the binned metric; the point estimate
  reported beside it stays the exact one.

A paired difference (two methods on the same images, or one image's clean and shifted
versions) resamples the same image indices for both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from ad_core.metrics.registry import FROM_MAPS, Metric, of_levels

N_RESAMPLES = 1000
CONFIDENCE = 0.95
PIXEL_BINS = 1024
FPR_LIMIT = 0.3

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (..., n_normal), (..., n_anomalous) -> (...)


def auroc(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """AUROC of every row: anomalous scores ``pos`` ranked against normal ``neg`` (ties count 1/2)."""
    n_neg, n_pos = neg.shape[-1], pos.shape[-1]
    ranks = stats.rankdata(np.concatenate([neg, pos], axis=-1), axis=-1)
    return (ranks[..., n_neg:].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_neg * n_pos)


def _descending(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tp, step_end), each (..., n): true positives among the k + 1 highest scores of each row,
    and whether position k closes a run of tied scores (there tp is that of "score >= t")."""
    scores = np.concatenate([neg, pos], axis=-1)
    labels = np.concatenate([np.zeros(neg.shape, bool), np.ones(pos.shape, bool)], axis=-1)
    order = np.argsort(-scores, axis=-1, kind="stable")
    s, y = np.take_along_axis(scores, order, -1), np.take_along_axis(labels, order, -1)
    tp = np.cumsum(y, axis=-1)
    step_end = np.ones(s.shape, bool)
    step_end[..., :-1] = s[..., 1:] != s[..., :-1]  # the last of tied scores closes a step
    return tp, step_end


def average_precision(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """AP of every row, as scikit-learn computes it: sum over score steps of (recall gain) x precision."""
    tp, step_end = _descending(neg, pos)
    precision = tp / np.arange(1, tp.shape[-1] + 1)
    tp_end = np.where(step_end, tp, 0)
    before = np.concatenate([np.zeros(tp.shape[:-1] + (1,)), np.maximum.accumulate(tp_end, axis=-1)[..., :-1]], -1)
    return (step_end * (tp - before) * precision).sum(axis=-1) / pos.shape[-1]


def f1_max(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """F1-max of every row: the best F1 = 2 TP / (predicted + positives) over the distinct thresholds."""
    tp, step_end = _descending(neg, pos)
    f1 = 2 * tp / (np.arange(1, tp.shape[-1] + 1) + pos.shape[-1])
    return np.where(step_end, f1, 0.0).max(axis=-1)  # mid-run positions are no threshold


def f1_at(tau: float) -> Statistic:
    def f1(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
        tp = (pos >= tau).sum(axis=-1)
        fp = (neg >= tau).sum(axis=-1)
        denominator = tp + pos.shape[-1] + fp  # 2 tp + fp + fn
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return f1


def accuracy_at(tau: float) -> Statistic:
    def accuracy(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
        correct = (pos >= tau).sum(axis=-1) + (neg < tau).sum(axis=-1)
        return correct / (neg.shape[-1] + pos.shape[-1])
    return accuracy


def image_statistics(tau: float) -> dict[str, Statistic]:
    """The bootstrap statistic of every registered image metric that has one, at ``tau``, in table order."""
    return {m.name: m.bootstrap(tau) for m in of_levels("image") if m.bootstrap is not None}


def interval(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], seed: int,
             n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """Percentile interval of ``statistic(*samples)``; each sample resampled along its last axis."""
    def vectorised(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:  # scipy passes axis=-1
        return statistic(*resampled)

    res = stats.bootstrap(tuple(samples), vectorised, vectorized=True, paired=False, axis=-1,
                          n_resamples=n_resamples, confidence_level=CONFIDENCE, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def split_by_label(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool)
    return np.asarray(scores, dtype=np.float64)[~labels], np.asarray(scores, dtype=np.float64)[labels]


def image_intervals(scores: np.ndarray, labels: np.ndarray, tau: float, seed: int,
                    n_resamples: int = N_RESAMPLES) -> dict[str, tuple[float, float]]:
    """95% interval of each image metric; the same resamples for every metric (one seed)."""
    neg, pos = split_by_label(scores, labels)
    return {name: interval((neg, pos), stat, seed, n_resamples) for name, stat in image_statistics(tau).items()}


def paired_difference(sides: Sequence[tuple[np.ndarray, np.ndarray, Statistic, Statistic]],
                      labels: Sequence[np.ndarray], seed: int,
                      n_resamples: int = N_RESAMPLES) -> tuple[float, tuple[float, float]]:
    """Mean over strata (classes) of stat_a(A) - stat_b(B), with its paired 95% interval.

    ``sides[c] = (scores_a, scores_b, stat_a, stat_b)`` for stratum c, both sides on the same
    images in the same order (the statistics differ where each side has its own tau);
    ``labels[c]`` their labels.  Within a stratum, normal and anomalous images are resampled
    separately, the same indices for both sides.
    """
    samples, stats_of = [], []
    for (a, b, stat_a, stat_b), y in zip(sides, labels):
        y = np.asarray(y).astype(bool)
        pair = np.stack([np.asarray(a, np.float64), np.asarray(b, np.float64)])  # (2, n): columns stay paired
        samples += [pair[:, ~y], pair[:, y]]
        stats_of.append((stat_a, stat_b))

    def difference(*resampled: np.ndarray) -> np.ndarray:
        parts = []
        for c, (stat_a, stat_b) in enumerate(stats_of):  # scipy keeps the side axis first: (2, [R,] n)
            neg, pos = resampled[2 * c], resampled[2 * c + 1]
            parts.append(stat_a(neg[0], pos[0]) - stat_b(neg[1], pos[1]))
        return np.mean(parts, axis=0)

    point = float(difference(*samples))
    return point, interval(samples, difference, seed, n_resamples)


class PixelHistograms:
    """Per-image histograms of normal and defect pixels and per-region overlaps over shared bins.

    maps (N, H, W) float, masks (N, H, W) bool.  ``edges``: PIXEL_BINS quantiles of all values.
    """

    def __init__(self, maps: np.ndarray, masks: np.ndarray, bins: int = PIXEL_BINS):
        from skimage.measure import label

        values = np.asarray(maps, dtype=np.float32)
        sample = values.ravel()[:: max(1, values.size // 2_000_000)]
        self.edges = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1]))

        def counts(x: np.ndarray) -> np.ndarray:
            return np.bincount(np.searchsorted(self.edges, x, side="right"), minlength=len(self.edges) + 1)

        n_bins = len(self.edges) + 1
        self.normal = np.zeros((len(values), n_bins))
        self.defect = np.zeros((len(values), n_bins))
        regions, owner = [], []
        for i, (m, g) in enumerate(zip(values, np.asarray(masks, bool))):
            self.normal[i] = counts(m[~g])
            self.defect[i] = counts(m[g])
            labelled = label(g, connectivity=2)  # 8-connected regions, as PRO defines them
            for r in range(1, labelled.max() + 1):
                regions.append(counts(m[labelled == r]))
                owner.append(i)
        # fraction of each region at or above each bin's lower edge (score >= threshold)
        region = np.array(regions).reshape(-1, n_bins)
        self.overlap = np.cumsum(region[:, ::-1], axis=1)[:, ::-1] / np.maximum(region.sum(1, keepdims=True), 1)
        self.owner = np.array(owner, dtype=np.int64)
        self.fp = np.cumsum(self.normal[:, ::-1], axis=1)[:, ::-1]  # normal pixels >= each bin's lower edge

    def weights(self, *index_sets: np.ndarray) -> np.ndarray:
        """(R, N) how often each image is drawn, from resampled index arrays (R, n_k)."""
        idx = np.concatenate([np.atleast_2d(i) for i in index_sets], axis=-1).astype(np.int64)
        w = np.zeros((idx.shape[0], len(self.normal)))
        np.add.at(w, (np.arange(idx.shape[0])[:, None], idx), 1.0)
        return w

    def auroc(self, w: np.ndarray) -> np.ndarray:
        """(R,) pixel AUROC of each resample (ties within a bin count one half)."""
        neg, pos = w @ self.normal, w @ self.defect  # (R, bins)
        below = np.cumsum(neg, axis=1) - neg
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))

    def _counts_above(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tp, predicted, n_pos): (R, bins) defect / all pixels >= each bin's lower edge, highest
        bin first, and (R, 1) defect pixels; exact integer counts held in float64."""
        tp = np.cumsum((w @ self.defect)[:, ::-1], axis=1)
        predicted = tp + np.cumsum((w @ self.normal)[:, ::-1], axis=1)
        return tp, predicted, tp[:, -1:]

    def average_precision(self, w: np.ndarray) -> np.ndarray:
        """(R,) pixel AP of each resample: sum over bin edges of (recall gain) x precision."""
        tp, predicted, n_pos = self._counts_above(w)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)  # 0/0: an empty top bin
        return (np.diff(tp, axis=1, prepend=0) * precision).sum(1) / n_pos[:, 0]

    def f1_max(self, w: np.ndarray) -> np.ndarray:
        """(R,) pixel F1-max of each resample over the bin edges as thresholds."""
        tp, predicted, n_pos = self._counts_above(w)
        return (2 * tp / (predicted + n_pos)).max(1)

    def overlap_area(self, w: np.ndarray, limit: float = FPR_LIMIT) -> np.ndarray:
        """(R,) PRO of each resample: the per-region-overlap curve's area up to FPR ``limit``, divided by it."""
        fpr = (w @ self.fp) / (w @ self.normal).sum(1, keepdims=True)  # (R, bins), falling with the bin
        rw = w[:, self.owner]  # each region counts as often as its image is drawn
        mean_overlap = (rw @ self.overlap) / rw.sum(1, keepdims=True)
        out = np.empty(len(w))
        for r in range(len(w)):
            x, y = np.r_[0.0, fpr[r, ::-1]], np.r_[0.0, mean_overlap[r, ::-1]]  # rising FPR, from (0, 0)
            keep = x <= limit
            xs, ys = np.r_[x[keep], limit], np.r_[y[keep], np.interp(limit, x, y)]
            out[r] = np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / limit
        return out


def pixel_intervals(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, seed: int,
                    n_resamples: int = N_RESAMPLES) -> dict[str, tuple[float, float]]:
    """95% intervals of every registered pixel and region metric with a bootstrap statistic (pixel AUROC,
    PRO, AP, F1-max ...), resampling images (normal and anomalous separately); each metric its own
    ``interval`` with the same seed, so the same resamples."""
    hist = PixelHistograms(maps, masks)
    y = np.asarray(labels).astype(bool)
    normal_idx, anomalous_idx = np.flatnonzero(~y), np.flatnonzero(y)

    def statistic(m: Metric) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return lambda a, b: m.bootstrap(hist, hist.weights(a, b))  # type: ignore[misc]

    return {m.name: interval((normal_idx, anomalous_idx), statistic(m), seed, n_resamples)
            for m in of_levels(*FROM_MAPS) if m.bootstrap is not None}
