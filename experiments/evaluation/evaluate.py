"""Metrics of one evaluation set at one threshold, as the results JSON stores them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ad_core.metrics import EvaluationSet, evaluate_metrics, evaluated, of_levels
from ad_core.metrics.catalog import IMAGE_AUROC, shared_by_subsets
from ad_core.metrics.registry import FROM_MAPS
from ad_core.timing import phase
from experiments.evaluation.benchmark_data import segmentation_threshold
from experiments.evaluation.results import ClassResult, ScoreSet


def evaluate(test: ScoreSet, threshold: float, val: ScoreSet | None = None, by_defect: bool = False) -> ClassResult:
    """Every registered metric of the test set (image metrics at ``threshold`` and threshold-free, pixel and
    region metrics from the maps), None + the first absent one's reason per kind where undefined.  ``val``:
    the validation split, where its maps were kept for a benchmark measure's threshold (SegF1's).
    ``by_defect``: also per defect type (``test/<defect>/``, where the image metrics are defined): the test
    normals against that type's images alone (MVTec LOCO reports logical and structural anomalies apart: its
    PRO there is on the union of each image's region masks, its sPRO on the regions at the thresholds the
    official procedure picks on the whole test set, as its script does).  What the benchmark's measures read
    is worked out once, for the whole set and its subsets."""
    benchmark = test.benchmark
    if val is not None and val.maps is not None:  # kept where a measure of the benchmark reads them
        benchmark = replace(benchmark, segmentation_threshold=segmentation_threshold(val.maps, val.labels))
    if test.maps is not None:
        benchmark = shared_by_subsets(benchmark, test.maps)
    whole = replace(test, benchmark=benchmark)
    result = _evaluate(whole, threshold)
    if by_defect and result.image_metrics_absent is None:
        defect = np.array([p.split("/")[1] for p in whole.relpaths])
        normal = np.asarray(whole.labels) == 0
        result.by_defect = {d: _evaluate(whole.subset(normal | (defect == d)), threshold).metrics
                            for d in sorted(set(defect[~normal]))}
    return result


def _evaluate(test: ScoreSet, threshold: float) -> ClassResult:
    from sklearn.metrics import confusion_matrix

    with phase("image metrics"):
        evaluation = EvaluationSet.of(test.scores, test.labels, threshold, test.maps, test.masks, test.benchmark)
        pred = evaluation.scores >= evaluation.threshold
        confusion = confusion_matrix(evaluation.labels, pred, labels=[False, True]).astype(int).tolist()
        values, image_absent = evaluate_metrics(evaluation, of_levels("image"))
    with phase("pixel metrics: pixel AUROC, PRO"):
        pixel_values, pixel_absent = evaluate_metrics(evaluation, of_levels(*FROM_MAPS))
    values.update(pixel_values)
    return ClassResult(evaluation.threshold, confusion, {m.name: values[m.name] for m in evaluated()},
                       pixel_metrics_absent=pixel_absent, image_metrics_absent=image_absent)


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
        versus_normals = EvaluationSet.of(np.r_[normal, s], labels, threshold)
        out[group] = {"n": int(len(s)), "auroc_vs_test_normals": IMAGE_AUROC.compute(versus_normals),
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
