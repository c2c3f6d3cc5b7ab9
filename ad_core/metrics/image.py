"""Image-level metrics: AUROC, AUPRC (average precision), F1, accuracy, confusion matrix, F1-max."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score

from ad_core.errors import UndefinedMetricError
from ad_core.metrics.registry import one_label_reason
from ad_core.thresholds import check_labels, check_scores, f1_at


@dataclass(frozen=True)
class ImageMetrics:
    auroc: float
    auprc: float
    f1: float
    accuracy: float
    threshold: float
    confusion: list[list[int]]  # [[TN, FP], [FN, TP]]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _checked(scores: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores float64 (n,), labels bool (n,)); :class:`UndefinedMetricError` unless both classes occur."""
    s = check_scores(scores)
    y = check_labels(labels, s.size)
    why = one_label_reason(y, metric)
    if why:
        raise UndefinedMetricError(why)
    return s, y


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    s, y = _checked(scores, labels, "Image AUROC")
    return float(roc_auc_score(y, s))


def image_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best F1 over every distinct threshold "score >= t" (threshold-free), in [0, 1].

    scores (n,) float, labels (n,) 0/1: the maximum of 2PR / (P + R) over scikit-learn's
    ``precision_recall_curve`` (0 where P + R = 0).  Undefined without both classes, as AUROC.
    """
    s, y = _checked(scores, labels, "Image F1-max")
    precision, recall, _ = precision_recall_curve(y, s)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return float(f1.max())


def image_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> ImageMetrics:
    """All image metrics of one evaluation set at the calibrated ``threshold``."""
    s = check_scores(scores)
    y = check_labels(labels, s.size)
    auroc = image_auroc(s, y)
    pred = s >= threshold
    cm = confusion_matrix(y, pred, labels=[False, True])
    return ImageMetrics(
        auroc=auroc,
        auprc=float(average_precision_score(y, s)),
        f1=f1_at(s, y, threshold),
        accuracy=float(np.mean(pred == y)),
        threshold=float(threshold),
        confusion=cm.astype(int).tolist(),
    )
