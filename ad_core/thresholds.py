"""Threshold calibration (docs/protocol.md §7): one registry of rules, ``RULES``.

- ``f1`` (the study's): the F1-optimal tau on a 1000-step grid of the validation scores; it needs
  anomalous validation images.
- ``normal-fpr`` (for validation sets of good images only: MVTec AD 2's ``validation/good``, LOCO's,
  almost every factory line's): the lowest tau that flags at most a target fraction ``fpr`` of the
  held-out normal images (default 1%): tau is the empirical (1 - fpr) quantile of their scores,
  taken at a score so that ties never push the rate over the target.  Anchors: anomalib's MVTec AD 2
  support, which thresholds at a percentile of held-out normal scores, and MVTec's own baseline for
  its evaluation server (mean + 3 sd of the validation scores: about 0.1% for Gaussian scores).
  1% is a false-alarm rate an inspection line can act on and still measurable with the hundreds
  of normal validation images such sets hold; ``--threshold-fpr`` sets another.

``choose_rule`` picks ``f1`` where the validation set has anomalies and ``normal-fpr`` otherwise
(``auto``), or takes the rule asked for; the rule used is recorded with every tau.  Adding a rule:
a function ``(scores, labels, **params) -> Threshold`` and one ``Rule`` entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ad_core.errors import ThresholdError

N_STEPS = 1000
DEFAULT_FPR = 0.01


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
    val_f1: float | None  # F1 on the validation set (None: it has no anomaly)
    n_steps: int = N_STEPS
    rule: str = "f1"  # the RULES entry that chose it, with its parameter: "f1", "normal-fpr@0.01"
    val_fpr: float | None = None  # the fraction of validation normals at or above it


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


def normal_fpr_threshold(scores: np.ndarray, labels: np.ndarray, fpr: float = DEFAULT_FPR) -> Threshold:
    """The lowest tau with ``mean(normal scores >= tau) <= fpr``, from the validation normals alone.

    ``scores`` (N,), ``labels`` (N,) 0/1: only the normals (label 0) are used, so a validation set of good
    images only is enough.  With n normals at most floor(fpr * n) are flagged; when that is 0, tau is the
    next float above the largest normal score (none flagged).  Ties never push the rate over ``fpr``.
    """
    s = check_scores(scores, "validation scores")
    y = check_labels(labels, s.size, "validation labels")
    if not 0 <= fpr < 1 or not math.isfinite(fpr):
        raise ValueError(f"the target false-positive rate must be in [0, 1), got {fpr}")
    normal = np.sort(s[~y])
    n = normal.size
    if n == 0:
        raise ThresholdError("The validation set has no normal image: a rate of false alarms cannot be set.")
    allowed = math.floor(fpr * n + 1e-9)  # +1e-9: 0.01 * 300 is 2.9999999999999996 in floats
    values = np.unique(normal)
    flagged = n - np.searchsorted(normal, values, side="left")  # normals >= each distinct value
    ok = np.flatnonzero(flagged <= allowed)
    tau = float(values[ok[0]]) if ok.size else float(np.nextafter(normal[-1], np.inf))
    rate = float(np.mean(normal >= tau))
    f1 = f1_at(s, y, tau) if y.any() else None
    return Threshold(tau, f1, 0, f"normal-fpr@{fpr:g}", rate)


@dataclass(frozen=True)
class Rule:
    """A threshold rule: its function and why it cannot apply to a validation set (None: it can)."""

    name: str
    description: str
    calibrate: Callable[..., Threshold]
    unusable: Callable[[np.ndarray], str | None]


def _f1_unusable(labels: np.ndarray) -> str | None:
    return None if np.asarray(labels).astype(bool).any() else "the validation set has no anomalous image"


def _fpr_unusable(labels: np.ndarray) -> str | None:
    return None if (~np.asarray(labels).astype(bool)).any() else "the validation set has no normal image"


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("f1", "F1-optimal over 1000 steps of the validation score range", lambda s, y, **_: f1_optimal_threshold(s, y),
         _f1_unusable),
    Rule("normal-fpr", "the lowest tau flagging at most a target fraction of the validation normals",
         lambda s, y, fpr=DEFAULT_FPR, **_: normal_fpr_threshold(s, y, fpr), _fpr_unusable),
)}
CHOICES = ("auto", *RULES)


def choose_rule(requested: str, labels: np.ndarray) -> tuple[str, str]:
    """(rule name, why) for a validation set: ``auto`` takes ``f1`` where it applies, else ``normal-fpr``."""
    if requested not in CHOICES:
        raise ValueError(f"threshold rule must be one of {', '.join(CHOICES)}, got {requested!r}")
    if requested != "auto":
        why = RULES[requested].unusable(labels)
        if why:
            raise ThresholdError(f"--threshold {requested} cannot be used: {why}")
        return requested, "asked for (--threshold)"
    why_not_f1 = RULES["f1"].unusable(labels)
    if why_not_f1 is None:
        return "f1", "the study's rule: the validation set has anomalous images"
    return "normal-fpr", f"the F1 rule cannot apply: {why_not_f1}"


def calibrate(scores: np.ndarray, labels: np.ndarray, requested: str = "auto", fpr: float = DEFAULT_FPR
              ) -> tuple[Threshold, str]:
    """(tau by the rule ``choose_rule`` picks, why that rule)."""
    name, why = choose_rule(requested, labels)
    return RULES[name].calibrate(scores, labels, fpr=fpr), why
