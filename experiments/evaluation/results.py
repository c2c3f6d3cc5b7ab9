"""Typed results of a scenario: the one form the runner produces and every reader takes
(artifacts, plots, report, verdict, goldens, compare, statistics).

``ScenarioResult.to_json`` is the ``results/<scenario>.json`` format; ``from_json`` reads it
back, once, at the edge (``artifacts.load_results``, ``compare``): the report covers every
scenario in ``--out``, including earlier runs'.  This module is the one place that knows the
JSON's keys; readers use the accessors (``ScenarioResult.entries``, ``ClassResult.test_sizes``,
``uncertain_groups``, ``MethodResult.mean``, ``cross_class_confusion``, ...).  Per-image
scores (``ScoreSet``) travel in memory only; on disk they are ``scores/<scenario>/*.csv``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, NamedTuple

import numpy as np
from pydantic import BeforeValidator

from ad_core.data.records import Count, Number, Strict
from ad_core.metrics import METRICS, evaluated, macro_mean, of_levels, recorded_names
from ad_core.metrics.registry import EVALUATED, BenchmarkData

MEAN = "mean"  # the entry of the macro mean over classes, after the classes' (summary.csv, goldens)
POOLED = "pooled"  # the entry of one global tau over every class's test images (goldens)

Numbers = dict[str, float | None]  # recorded name (``recorded_names()``) -> value (None: not measured)


@dataclass
class ScoreSet:
    """Scores of one model on one split: image scores (N,), maps (N, S, S) or None, labels (N,)."""

    relpaths: list[str]
    labels: np.ndarray
    scores: np.ndarray
    maps: np.ndarray | None = None  # None: not kept (validation) or the method makes no maps
    masks: np.ndarray | None = None  # (N, S, S) bool, None for image-level-only data
    benchmark: BenchmarkData = field(default_factory=BenchmarkData)  # what the benchmark's own measures read

    @staticmethod
    def concat(parts: list[ScoreSet]) -> ScoreSet:
        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        masks = cat("masks")  # maps are only read where masks exist: not concatenated (loaded) otherwise
        maps = cat("maps") if masks is not None else None
        regions = [p.benchmark.regions for p in parts]
        pooled = BenchmarkData(  # classes pooled: their regions together; thresholds are each class's own
            parts[0].benchmark.measures if len({p.benchmark.measures for p in parts}) == 1 else (),
            None if any(r is None for r in regions) else [x for r in regions for x in r])
        return ScoreSet(sum((p.relpaths for p in parts), []), cat("labels"), cat("scores"), maps, masks, pooled)

    def subset(self, keep: np.ndarray) -> ScoreSet:
        """The images ``keep`` (N,) bool selects, with their maps, masks and benchmark data."""
        def part(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a)[keep]

        return ScoreSet([p for p, k in zip(self.relpaths, keep) if k], part(self.labels), part(self.scores),
                        part(self.maps), part(self.masks), self.benchmark.subset(keep))


def _confusion(v: object) -> object:
    ok = (isinstance(v, list) and len(v) == 2 and all(isinstance(r, list) and len(r) == 2 for r in v)
          and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for r in v for n in r))
    if not ok:
        raise ValueError("must be [[TN, FP], [FN, TP]] of integers >= 0")
    return v


Confusion = Annotated[list[list[int]], BeforeValidator(_confusion)]  # [[TN, FP], [FN, TP]]


class UncertainGroupRecord(Strict):
    """One group of images of unsure label as the results file holds it (``evaluate.evaluate_uncertain``)."""

    n: Count
    auroc_vs_test_normals: Number
    median_score: Number = None
    flagged_fraction: Number = None


# The field types below are the results file's schema too (experiments.readers.run_folder reads them strictly)
@dataclass
class ClassResult:
    """Metrics of one method on one class's test split at its tau (pixel metrics None + reason when absent).

    ``metrics``: every evaluated metric of the registry (``ad_core.metrics.METRICS``) by name, None where
    absent (image ranking metrics where the test set has one label only, with ``image_metrics_absent``).
    """

    threshold: float
    confusion: Confusion
    metrics: dict[str, float | None] = field(default_factory=dict)
    pixel_metrics_absent: str | None = None
    image_metrics_absent: str | None = None  # why AUROC, AUPRC, F1 (and F1-max) are undefined
    threshold_rule: str | None = None  # the thresholds.RULES entry that set tau, and why: "f1 (...)"
    by_defect: dict[str, dict[str, Number]] | None = None  # per defect type (MVTec LOCO: logical, structural)
    # images of unsure label, per group (ELPV), and set-wide figures beside them
    uncertain: dict[str, UncertainGroupRecord | Number] | None = None
    memory_bank_size: Count | None = None  # recorded in parameter sweeps (coreset ablation)
    fit_seconds: Number = None
    ci95: dict[str, list[Number]] | None = None  # bootstrap [low, high] per metric (evaluation.statistics)

    def recorded(self) -> Numbers:
        """The evaluated metrics and tau, in registry order (``recorded_names()``)."""
        return {m.name: self.threshold if m.level == "calibration" else self.metrics.get(m.name)
                for m in of_levels(*EVALUATED, "calibration")}

    def number(self, name: str) -> float | None:
        """One recorded number (a metric, or tau) by name; KeyError for one not recorded."""
        return self.recorded()[name]

    @property
    def test_sizes(self) -> tuple[int, int]:
        """(normal, anomalous) images of the test set: the rows of the confusion matrix."""
        (tn, fp), (fn, tp) = self.confusion
        return tn + fp, fn + tp

    def uncertain_groups(self) -> dict[str, UncertainGroup]:
        """The uncertain evaluation's groups (ELPV's ``p033``, ``p067``), in recorded order; the
        set-wide medians recorded next to them are left out."""
        return {g: UncertainGroup(e["n"], e["auroc_vs_test_normals"])
                for g, e in (self.uncertain or {}).items() if isinstance(e, dict)}

    def to_json(self) -> dict[str, object]:
        """The study's numbers, ``confusion``, the later ones (each written, null where absent), then the
        optional fields that are set."""
        numbers = self.recorded()
        data = asdict(self)
        optional = {k: v for k, v in data.items() if k not in (*OWN_FIELDS, "confusion") and v is not None}
        return {**{k: v for k, v in numbers.items() if METRICS[k].origin == "study"}, "confusion": data["confusion"],
                **{k: v for k, v in numbers.items() if METRICS[k].origin != "study"}, **optional}

    @classmethod
    def from_json(cls, d: dict) -> ClassResult:
        metrics = {m.name: d.get(m.name) for m in evaluated()}
        return cls(**{f.name: d.get(f.name) for f in fields(cls) if f.name != "metrics"}, metrics=metrics)


OWN_FIELDS = ("threshold", "metrics")  # ClassResult's fields written as recorded numbers, not under their own key


class UncertainGroup(NamedTuple):
    """Images of unsure label of one group: how many, and their AUROC against the test normals."""

    n: int
    auroc_vs_test_normals: float | None


def method_key(method: str, coreset_ratio: float | None) -> str:
    """The method's key in results JSON, thresholds and goldens: ``padim``, ``patchcore@rho=0.05``."""
    return method if coreset_ratio is None else f"{method}@rho={coreset_ratio:g}"


@dataclass
class MethodResult:
    """One method (at one coreset ratio in a sweep) over every class of a scenario.

    ``stored_mean``: set by ``from_json``, so that a results file reads back as it was written (its
    ``mean`` is what summary.csv and the report state and what ``ad-repro compare`` compares: a class
    number edited by hand does not move it); None: the macro mean of ``per_class``.
    """

    method: str
    coreset_ratio: float | None
    per_class: dict[str, ClassResult]
    thresholds: dict[str, float]
    per_image: dict[str, ScoreSet] = field(default_factory=dict)  # test scores per class, in memory only
    pooled: ClassResult | None = None  # one global tau: all classes' test images together
    shortcut: dict | None = None  # cross-class confusion and feature separation (unified model)
    stored_mean: dict | None = field(default=None, repr=False, compare=False)  # the mean as JSON states it

    @property
    def key(self) -> str:
        return method_key(self.method, self.coreset_ratio)

    @property
    def slug(self) -> str:
        """The key as a file-name part: ``patchcore_rho0.05``."""
        return self.key.replace("@", "_").replace("=", "")

    def _mean_json(self) -> dict[str, float | None]:
        if self.stored_mean is not None:
            return self.stored_mean
        return macro_mean({c: r.recorded() for c, r in self.per_class.items()})

    def mean(self) -> Numbers:
        """The macro mean over classes of every recorded number (None: absent for some class)."""
        mean = self._mean_json()
        return {k: mean.get(k) for k in recorded_names()}

    def entries(self) -> list[tuple[str, Numbers]]:
        """(class, its recorded numbers) for each class, then (``MEAN``, the macro mean's)."""
        return [*((c, r.recorded()) for c, r in self.per_class.items()), (MEAN, self.mean())]

    @property
    def cross_class_confusion(self) -> dict[str, dict[str, float]] | None:
        """Fraction of class i's normal test images flagged at class j's tau, ``[i][j]`` (unified model)."""
        return None if self.shortcut is None else self.shortcut["cross_class_confusion"]

    @property
    def feature_separation(self) -> dict[str, float] | None:
        """``silhouette`` and ``centroid_accuracy`` of the classes' pooled features (unified model)."""
        return None if self.shortcut is None else self.shortcut["feature_separation"]

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"method": self.method, "coreset_ratio": self.coreset_ratio,
                                  "per_class": {c: r.to_json() for c, r in self.per_class.items()},
                                  "mean": self._mean_json()}
        if self.pooled is not None:
            out["pooled"] = self.pooled.to_json()
        if self.shortcut is not None:
            out["shortcut"] = self.shortcut
        return out

    @classmethod
    def from_json(cls, d: dict) -> MethodResult:
        per_class = {c: ClassResult.from_json(r) for c, r in d["per_class"].items()}
        return cls(d["method"], d["coreset_ratio"], per_class, {c: r.threshold for c, r in per_class.items()},
                   pooled=ClassResult.from_json(d["pooled"]) if "pooled" in d else None, shortcut=d.get("shortcut"),
                   stored_mean=d["mean"])


@dataclass
class ScenarioResult:
    """Every method of one scenario, with the run configuration and the figures drawn for it."""

    scenario: str
    description: str
    config: dict
    methods: list[MethodResult]
    figures: list[str] = field(default_factory=list)  # paths relative to --out

    def method(self, key: str) -> MethodResult:
        return next(m for m in self.methods if m.key == key)

    def find(self, key: str) -> MethodResult | None:
        """The method of that key, or None where the scenario did not run it."""
        return next((m for m in self.methods if m.key == key), None)

    def categories(self) -> list[str]:
        """The classes of the scenario (its first method's), in run order; [] without methods."""
        return list(self.methods[0].per_class) if self.methods else []

    def entries(self) -> Iterator[tuple[str, str, Numbers]]:
        """(method key, class or ``MEAN``, recorded numbers) of every method: summary.csv's rows."""
        for m in self.methods:
            for entry, numbers in m.entries():
                yield m.key, entry, numbers

    def thresholds(self) -> dict[str, dict[str, float]]:
        return {m.key: m.thresholds for m in self.methods}

    def to_json(self) -> dict[str, object]:
        return {"scenario": self.scenario, "description": self.description, "config": self.config,
                "methods": {m.key: m.to_json() for m in self.methods}, "figures": self.figures}

    @classmethod
    def from_json(cls, d: dict) -> ScenarioResult:
        """A ``results/<scenario>.json``; KeyError (``methods`` first) where a key is missing."""
        methods = [MethodResult.from_json(m) for m in d["methods"].values()]
        return cls(d["scenario"], d["description"], d["config"], methods, list(d.get("figures", [])))
