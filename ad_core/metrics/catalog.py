"""The study's metrics and checked numbers, one ``Metric`` record each, in table order (docs/protocol.md §7).

Image metrics take the test set's image scores; ``image_f1`` and ``image_accuracy`` are at the calibrated
tau, the others threshold-free.  Pixel and region metrics share one sort of every test pixel
(``pixel.pixel_scores``).  The study's own numbers come first; the field's threshold-free additions
(VisA / ADer tables: image F1-max, pixel AP, pixel F1-max) after them, so every earlier column keeps its
place.  Tolerances: one swapped (normal, anomalous) pair moves AUROC by 1/(n_normal n_anomalous); one
image crossing tau moves F1 / accuracy by up to 1/n_test; pixel numbers pool 10^5-10^6 pixels, so the
measured drift decides.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.metrics import average_precision_score

from ad_core.metrics import bootstrap
from ad_core.metrics.image import image_auroc, image_f1_max
from ad_core.metrics.pixel import pixel_scores
from ad_core.metrics.registry import (
    BOTH_LABELS,
    MAPS,
    MASKS,
    METRICS,
    BenchmarkData,
    EvaluationSet,
    Metric,
    Need,
    Tolerance,
    floor,
    measure_of_the_benchmark,
    per_image,
    per_pair,
    register,
)
from ad_core.thresholds import f1_at


def shared_pixel_scores(evaluation: EvaluationSet) -> dict[str, float]:
    """Pixel AUROC, PRO, AP and F1-max of the set from one sort of its pixels (computed once per set)."""
    return pixel_scores(evaluation.maps, evaluation.masks)


CROSSING_TAU = "two images of the smallest test set crossing tau (half a step more: float rounding)"
MAP_NEEDS = (BOTH_LABELS, MASKS, MAPS)

IMAGE_AUROC = register(Metric(
    "image_auroc", "image", "area under the ROC curve of the image scores (ties count one half)",
    per_pair(3, "three swapped (normal, anomalous) pairs of the smallest test set"),
    compute=lambda e: image_auroc(e.scores, e.labels), bootstrap=lambda tau: bootstrap.auroc,
    needs=(BOTH_LABELS,), origin="study", per_defect=True))
IMAGE_AUPRC = register(Metric(
    "image_auprc", "image", "average precision of the image scores (scikit-learn's, ties one step)",
    per_pair(6, "a swap moves AP more near the top of the ranking: twice the AUROC allowance"),
    compute=lambda e: float(average_precision_score(e.labels, e.scores)),
    bootstrap=lambda tau: bootstrap.average_precision, needs=(BOTH_LABELS,), origin="study"))
IMAGE_F1 = register(Metric(
    "image_f1", "image", "F1 of the rule score >= tau (tau calibrated on the validation set)",
    per_image(2.5, CROSSING_TAU), compute=lambda e: f1_at(e.scores, e.labels, e.threshold),
    bootstrap=bootstrap.f1_at, needs=(BOTH_LABELS,), origin="study"))
IMAGE_ACCURACY = register(Metric(
    "image_accuracy", "image", "fraction of test images judged right by score >= tau (defined for one label too)",
    per_image(2.5, CROSSING_TAU), compute=lambda e: float(np.mean((e.scores >= e.threshold) == e.labels)),
    bootstrap=bootstrap.accuracy_at, origin="study"))
THRESHOLD = register(Metric(
    "threshold", "calibration", "the calibrated tau (an image is anomalous when score >= tau)",
    Tolerance(lambda s: (2e-3, "2 grid steps ~ 2e-3 relative"),
              "tau is a point of the 1000-step grid over the validation range (one step ~0.1% of it); a tie in "
              "F1 broken the other way moves it a step or two", unit="rel"),
    direction="none", source="ad_core.thresholds.calibrate", origin="study"))
PIXEL_AUROC = register(Metric(
    "pixel_auroc", "pixel", "AUROC over every pixel of every test image (normal images included)",
    floor(5e-4, "5e-4", "over every test pixel (~10^5-10^6): granularity negligible, drift decides"),
    compute=lambda e: e.once(shared_pixel_scores)["pixel_auroc"],
    bootstrap=lambda hist, w: hist.auroc(w), needs=MAP_NEEDS, origin="study", per_defect=True))
PRO = register(Metric(
    "pro", "region", "normalised area under the per-region-overlap curve up to FPR 0.3 (MVTec AD's protocol)",
    floor(5e-4, "5e-4", "mean overlap over every defect region: drift decides"),
    compute=lambda e: e.once(shared_pixel_scores)["pro"],
    bootstrap=lambda hist, w: hist.overlap_area(w), needs=MAP_NEEDS, origin="study", per_defect=True))
IMAGE_F1_MAX = register(Metric(
    "image_f1_max", "image", "the best image F1 over every threshold of the test scores (threshold-free)",
    per_image(2.5, "the best F1 over every threshold: two images of the smallest test set on the other side "
              "of it (half a step more: float rounding)"),
    compute=lambda e: image_f1_max(e.scores, e.labels), bootstrap=lambda tau: bootstrap.f1_max,
    needs=(BOTH_LABELS,), per_defect=True))
PIXEL_AP = register(Metric(
    "pixel_ap", "pixel", "average precision over every test pixel",
    floor(5e-4, "5e-4", "average precision over every test pixel: granularity negligible, drift decides"),
    compute=lambda e: e.once(shared_pixel_scores)["pixel_ap"],
    bootstrap=lambda hist, w: hist.average_precision(w), needs=MAP_NEEDS, per_defect=True))
PIXEL_F1_MAX = register(Metric(
    "pixel_f1_max", "pixel", "the best pixel F1 over every threshold of the test pixels",
    floor(5e-4, "5e-4", "the best F1 over every test pixel's threshold: granularity negligible, drift decides"),
    compute=lambda e: e.once(shared_pixel_scores)["pixel_f1_max"],
    bootstrap=lambda hist, w: hist.f1_max(w), needs=MAP_NEEDS))
MEMORY_BANK_SIZE = register(Metric(
    "memory_bank_size", "model", "PatchCore's memory-bank size (recorded in the coreset ablation)",
    Tolerance(lambda s: (0, "exact"), "floor(rho x training patches): an integer rule", drift=False),
    direction="none", source="ad_core.models.patchcore (ClassResult.memory_bank_size)"))
CROSS_CLASS_CONFUSION = register(Metric(
    "cross_class_confusion", "cross-class",
    "fraction of class i's normal test images flagged at class j's tau (unified model), one cell per (i, j)",
    Tolerance(lambda s: (1 / s.n_normal, f"1 / {s.n_normal}"), "one normal test image crossing another class's tau"),
    direction="lower", source="experiments.evaluation.evaluate.cross_class_confusion", cells="cross_class_"))
SILHOUETTE = register(Metric(
    "silhouette", "cross-class", "silhouette score of the classes' pooled features (unified model)",
    floor(1e-3, "1e-3", "a float statistic of the pooled features"),
    direction="none", source="experiments.evaluation.evaluate.feature_separation"))
CENTROID_ACCURACY = register(Metric(
    "centroid_accuracy", "cross-class", "leave-one-out nearest-class-centroid accuracy of the pooled features",
    Tolerance(lambda s: (0.01, "1 / 100"), "leave-one-out over the pooled training images (>= 100): about one image"),
    direction="none", source="experiments.evaluation.evaluate.feature_separation"))
UNCERTAIN_AUROC = register(Metric(
    "uncertain_{group}_auroc", "uncertain", "AUROC of one group of images of unsure label against the test normals",
    Tolerance(lambda s: (3 / (s.n_normal * s.n_group), f"3 / ({s.n_normal} x {s.n_group})"),
              "three swapped (test normal, {group}) pairs"),
    direction="none", source="experiments.evaluation.evaluate.evaluate_uncertain"))


# -- the benchmarks' own measures (docs/official_measures.md): each checked against its official code on a
# recorded fixture (tests/test_official_*.py).  IoU-max and mAD are ADer's, for every benchmark with masks;
# the others are computed only on the benchmark that declares them (``Capabilities.measures``).
def _iou_max(evaluation: EvaluationSet) -> float:
    from ad_core.metrics.iou import iou_max

    return iou_max(np.asarray(evaluation.maps, dtype=np.float32), evaluation.masks)


def _mad(evaluation: EvaluationSet) -> float:
    from ad_core.metrics.iou import MAD_METRICS, mad

    return mad({name: METRICS[name].compute(evaluation) for name in MAD_METRICS})  # type: ignore[misc]


def _au_pro_005(evaluation: EvaluationSet) -> float:
    from ad_core.metrics.segmentation import au_pro

    return au_pro(evaluation.maps, evaluation.masks, 0.05)


def _seg_f1(evaluation: EvaluationSet) -> float:
    from ad_core.metrics.segmentation import seg_f1

    return seg_f1(evaluation.maps, evaluation.masks, evaluation.benchmark.segmentation_threshold)


def _spro(evaluation: EvaluationSet) -> float:
    from ad_core.metrics.spro import FPR_LIMIT, auc_spro, official_thresholds

    b = evaluation.benchmark
    thresholds = b.region_thresholds
    if thresholds is None:  # the whole test set: the official procedure picks its thresholds here
        thresholds = official_thresholds(evaluation.maps, b.regions, rng=0)
    return auc_spro(evaluation.maps, b.regions, FPR_LIMIT, thresholds)


def shared_by_subsets(benchmark: BenchmarkData, maps: np.ndarray) -> BenchmarkData:
    """What the subsets of a test set (each defect type's) share with the whole set: sPRO's thresholds,
    which the official procedure picks once on every test image."""
    from ad_core.metrics.spro import official_thresholds

    if benchmark.regions is None or SPRO.name not in benchmark.measures or benchmark.region_thresholds is not None:
        return benchmark
    return replace(benchmark, region_thresholds=official_thresholds(maps, benchmark.regions, rng=0))


REGIONS = Need("region masks", lambda e: "no ground-truth regions with saturation areas (MVTec LOCO's "
               "defects_config.json)" if e.benchmark.regions is None else None)
SEGMENTATION_THRESHOLD = Need("a validation threshold", lambda e: "no validation normals' maps to set SegF1's "
                              "threshold" if e.benchmark.segmentation_threshold is None else None)
def needs_validation_maps(measures: tuple[str, ...]) -> bool:
    """Whether one of a benchmark's measures sets its threshold on the validation normals' maps (SegF1)."""
    return any(SEGMENTATION_THRESHOLD in METRICS[m].needs for m in measures if m in METRICS)


DRIFT_DECIDES = "pools every test pixel: granularity negligible, drift decides"

IOU_MAX = register(Metric(
    "iou_max", "pixel", "ADer's IoU-max: the best pooled IoU of the class's min-max-normalised maps over the "
    "thresholds 0, 0.05, ..., 1",
    floor(5e-4, "5e-4", DRIFT_DECIDES), compute=_iou_max, needs=MAP_NEEDS))
MAD = register(Metric(
    "mad", "pixel", "ADer's mAD: the mean of image AUROC, AP, F1-max, pixel AUROC, AP, F1-max and PRO",
    per_pair(3, "its image parts move by a swapped pair of the smallest test set (the pixel parts by less)"),
    compute=_mad, needs=MAP_NEEDS))
AU_PRO_005 = register(Metric(
    "au_pro_005", "region", "MVTec AD 2's AU-PRO: the PRO curve's normalised area up to FPR 0.05",
    floor(5e-4, "5e-4", "mean overlap over every defect region: drift decides"),
    compute=_au_pro_005, needs=(*MAP_NEEDS, measure_of_the_benchmark("au_pro_005")), per_defect=True))
SEG_F1 = register(Metric(
    "seg_f1", "pixel", "MVTec AD 2's SegF1: pooled pixel F1 of score > the validation normals' mean + 3 sd",
    floor(1e-3, "1e-3", "pixels crossing a threshold set from the validation maps: drift decides"),
    compute=_seg_f1, needs=(*MAP_NEEDS, measure_of_the_benchmark("seg_f1"), SEGMENTATION_THRESHOLD)))
SPRO = register(Metric(
    "spro", "region", "MVTec LOCO's AUC-sPRO: the saturated per-region overlap's normalised area up to FPR 0.05 "
    "(the official script's thresholds, picked on the whole test set)",
    floor(5e-4, "5e-4", "mean saturated overlap over every region: drift decides"),
    compute=_spro, needs=(BOTH_LABELS, MAPS, measure_of_the_benchmark("spro"), REGIONS), per_defect=True))
