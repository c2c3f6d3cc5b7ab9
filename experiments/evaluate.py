"""Metrics of one evaluation set at one threshold, as the results JSON stores them."""

from __future__ import annotations

import numpy as np

from ad_core.errors import UndefinedMetricError
from ad_core.metrics import image_f1_max, image_metrics, pixel_scores
from ad_core.metrics.image import image_auroc
from ad_core.timing import phase
from experiments.results import ClassResult, ScoreSet

NO_MASKS = "the dataset has no ground-truth masks (image-level only)"
NO_MAPS = "the method scores whole images and makes no anomaly maps (image-level only)"


def evaluate(test: ScoreSet, threshold: float) -> ClassResult:
    """Image metrics at ``threshold`` and threshold-free, plus pixel AUROC, PRO, AP and F1-max (None +
    reason when undefined)."""
    with phase("image metrics"):
        try:
            im = image_metrics(test.scores, test.labels, threshold)
        except UndefinedMetricError as exc:  # one label only (a line's own data without defects)
            return _one_label(test, threshold, str(exc))
        f1_max = image_f1_max(test.scores, test.labels)
    out = ClassResult(image_auroc=im.auroc, image_auprc=im.auprc, image_f1=im.f1, image_accuracy=im.accuracy,
                      threshold=im.threshold, pixel_auroc=None, pro=None, confusion=im.confusion,
                      image_f1_max=f1_max)
    if test.masks is None:
        out.pixel_metrics_absent = NO_MASKS
    elif test.maps is None:
        out.pixel_metrics_absent = NO_MAPS
    else:
        try:
            with phase("pixel metrics: pixel AUROC, PRO"):
                pixel = pixel_scores(test.maps, test.masks)
            out.pixel_auroc, out.pro, out.pixel_ap, out.pixel_f1_max = (
                pixel["pixel_auroc"], pixel["pro"], pixel["pixel_ap"], pixel["pixel_f1_max"])
        except UndefinedMetricError as exc:
            out.pixel_metrics_absent = str(exc)
    return out


def evaluate_by_defect(test: ScoreSet, threshold: float) -> dict[str, dict[str, float | None]]:
    """Per defect type (``test/<defect>/``): the test normals against that type's images alone, every
    metric of ``evaluate`` (MVTec LOCO reports logical and structural anomalies apart; its PRO here is on
    the union of each image's region masks, not its sPRO)."""
    defect = np.array([p.split("/")[1] for p in test.relpaths])
    normal = np.asarray(test.labels) == 0
    out = {}
    for d in sorted(set(defect[~normal])):
        keep = normal | (defect == d)

        def part(a: np.ndarray | None, keep: np.ndarray = keep) -> np.ndarray | None:
            return None if a is None else np.asarray(a)[keep]

        subset = ScoreSet([p for p, k in zip(test.relpaths, keep) if k], part(test.labels), part(test.scores),
                          part(test.maps), part(test.masks))
        out[d] = {k: v for k, v in evaluate(subset, threshold).recorded().items() if k != "threshold"}
    return out


def _one_label(test: ScoreSet, threshold: float, why: str) -> ClassResult:
    """A test set of one label: the accuracy at tau (1 - FPR on normals) and the confusion; every ranking
    metric undefined, said; pixel metrics need anomalous pixels, so they are undefined too."""
    from sklearn.metrics import confusion_matrix

    y = np.asarray(test.labels).astype(bool)
    pred = np.asarray(test.scores) >= threshold
    confusion = confusion_matrix(y, pred, labels=[False, True]).astype(int).tolist()  # as image_metrics makes it
    return ClassResult(image_auroc=None, image_auprc=None, image_f1=None, image_accuracy=float(np.mean(pred == y)),
                       threshold=float(threshold), pixel_auroc=None, pro=None, confusion=confusion,
                       image_metrics_absent=why, pixel_metrics_absent=why)


def evaluate_uncertain(uncertain: ScoreSet, test: ScoreSet, threshold: float) -> dict[str, object]:
    """Images of unsure label (``uncertain/<group>/``), kept out of the study's metrics.

    Per group: count, AUROC of the group against the test normals, median score and the
    fraction flagged at tau; plus the test normals' and test anomalies' median scores.
    """
    normal = test.scores[test.labels == 0]
    out: dict[str, object] = {
        "test_normal_median_score": float(np.median(normal)),
        "test_anomalous_median_score": float(np.median(test.scores[test.labels == 1])),
    }
    groups = np.array([p.split("/")[1] for p in uncertain.relpaths])
    for group in sorted(set(groups)):
        s = uncertain.scores[groups == group]
        labels = np.r_[np.zeros(len(normal)), np.ones(len(s))]
        out[group] = {"n": int(len(s)), "auroc_vs_test_normals": image_auroc(np.r_[normal, s], labels),
                      "median_score": float(np.median(s)), "flagged_fraction": float(np.mean(s >= threshold))}
    return out


def cross_class_confusion(normal_scores: dict[str, np.ndarray],
                          thresholds: dict[str, float]) -> dict[str, dict[str, float]]:
    """Fraction of class i's normal test images judged anomalous with class j's tau."""
    return {i: {j: float(np.mean(s >= thresholds[j])) for j in thresholds} for i, s in normal_scores.items()}


def feature_separation(embeddings: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """How separable the classes are in feature space (image-level mean-pooled features).

    silhouette: scikit-learn's silhouette score (1 = perfectly separated clusters);
    centroid_accuracy: leave-one-out nearest-class-centroid accuracy.
    """
    from sklearn.metrics import silhouette_score

    uniq = np.unique(classes)
    if len(uniq) < 2:
        return {"silhouette": None, "centroid_accuracy": None}  # type: ignore[dict-item]
    sums = {c: embeddings[classes == c].sum(0) for c in uniq}
    counts = {c: int((classes == c).sum()) for c in uniq}
    correct = 0
    for x, c in zip(embeddings, classes):
        best, best_d = None, np.inf
        for k in uniq:
            n = counts[k] - (k == c)
            if n == 0:
                continue
            centroid = (sums[k] - (x if k == c else 0)) / n
            d = np.linalg.norm(x - centroid)
            if d < best_d:
                best, best_d = k, d
        correct += best == c
    return {"silhouette": float(silhouette_score(embeddings, classes)),
            "centroid_accuracy": correct / len(classes)}
