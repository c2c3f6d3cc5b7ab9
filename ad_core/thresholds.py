"""Threshold calibration: the F1-optimal tau on a 1000-step grid (docs/protocol.md §7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ad_core.errors import ThresholdError

N_STEPS = 1000


def check_scores(scores: np.ndarray, what: str = "scores") -> np.ndarray:
    """1-d float64 copy of ``scores``; a clear error for NaN/inf (a model bug, never data)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    bad = ~np.isfinite(s)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{what} contain {idx.size} non-finite value(s) (NaN/inf), first at index "
            f"{idx[0]}: the model produced invalid scores; check its inputs and fit."
        )
    return s


def check_labels(labels: np.ndarray, n: int, what: str = "labels") -> np.ndarray:
    lab = np.asarray(labels).ravel()
    if lab.size != n:
        raise ValueError(f"{what} has {lab.size} entries for {n} scores.")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError(f"{what} must be 0 (normal) or 1 (anomalous).")
    return lab.astype(bool)


@dataclass(frozen=True)
class Threshold:
    """A calibrated threshold: an image is anomalous when ``score >= value``."""

    value: float
    val_f1: float
    n_steps: int = N_STEPS


def f1_at(scores: np.ndarray, labels: np.ndarray, tau: float) -> float:
    """F1 of the rule ``score >= tau`` (0 when nothing is predicted and nothing is true)."""
    pred = scores >= tau
    tp = np.sum(pred & labels)
    denom = pred.sum() + labels.sum()
    return float(2 * tp / denom) if denom else 0.0


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray, n_steps: int = N_STEPS) -> Threshold:
    """tau* over ``n_steps`` evenly spaced values in [min, max] of the scores (ends included)
    maximising F1 with ``score >= tau``; ties go to the lowest tau.

    Constant scores give a grid of one value: tau = that value (every image anomalous).
    Validation without anomalies has no F1 optimum: :class:`ThresholdError`.
    """
    s = check_scores(scores, "validation scores")
    y = check_labels(labels, s.size, "validation labels")
    if s.size == 0:
        raise ThresholdError("No validation scores: the validation split is empty.")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ThresholdError(
            "The validation set has no anomalous image, so F1 is 0 for every threshold and "
            "no F1-optimal threshold exists. Calibrate on a split with anomalies (the study "
            "uses 30% of the anomalous test images)."
        )
    grid = np.linspace(s.min(), s.max(), n_steps)
    # predicted positives / true positives at each tau via sorted scores: O(n log n + steps)
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp_from = np.concatenate([np.cumsum(y_sorted[::-1])[::-1], [0]])  # positives at index >= i
    first = np.searchsorted(s_sorted, grid, side="left")  # first index with score >= tau
    pred_pos = s.size - first
    tp = tp_from[first]
    f1 = 2.0 * tp / (pred_pos + n_pos)
    best = int(np.argmax(f1))  # first maximum = lowest tau
    return Threshold(float(grid[best]), float(f1[best]), n_steps)
