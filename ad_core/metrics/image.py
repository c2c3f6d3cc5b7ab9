"""Image-level metrics: AUROC, AUPRC (average precision), F1, accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from ad_core.errors import UndefinedMetricError
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


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    s = check_scores(scores)
    y = check_labels(labels, s.size)
    if y.all() or not y.any():
        raise UndefinedMetricError(
            "Image AUROC needs both normal and anomalous images; this set has only "
            f"{'anomalous' if y.all() else 'normal'} ones."
        )
    return float(roc_auc_score(y, s))


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
