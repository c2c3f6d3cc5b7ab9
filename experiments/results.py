"""Typed results of a scenario: what the runner produces and artifacts, plots and report read.

``ScenarioResult.to_json`` is the ``results/<scenario>.json`` format; ``from_json`` reads it
back (the report covers every scenario in ``--out``, including earlier runs').  Per-image
scores (``ScoreSet``) travel in memory only; on disk they are ``scores/<scenario>/*.csv``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ad_core.metrics import IMAGE_METRICS, PIXEL_METRICS, macro_mean

# The numbers stored per (method, class): the metrics plus the calibrated tau, in table order.
RECORDED = (*IMAGE_METRICS, "threshold", *PIXEL_METRICS)


@dataclass
class ScoreSet:
    """Scores of one model on one split: image scores (N,), maps (N, S, S) or None, labels (N,)."""

    relpaths: list[str]
    labels: np.ndarray
    scores: np.ndarray
    maps: np.ndarray | None = None  # None: not kept (validation) or the method makes no maps
    masks: np.ndarray | None = None  # (N, S, S) bool, None for image-level-only data

    @staticmethod
    def concat(parts: list[ScoreSet]) -> ScoreSet:
        def cat(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else np.concatenate(values)

        masks = cat("masks")  # maps are only read where masks exist: not concatenated (loaded) otherwise
        maps = cat("maps") if masks is not None else None
        return ScoreSet(sum((p.relpaths for p in parts), []), cat("labels"), cat("scores"), maps, masks)


@dataclass
class ClassResult:
    """Metrics of one method on one class's test split at its tau (pixel metrics None + reason when absent)."""

    image_auroc: float
    image_auprc: float
    image_f1: float
    image_accuracy: float
    threshold: float
    pixel_auroc: float | None
    pro: float | None
    confusion: list[list[int]]  # [[TN, FP], [FN, TP]]
    pixel_metrics_absent: str | None = None
    uncertain: dict | None = None  # images of unsure label, per group (ELPV)
    memory_bank_size: int | None = None  # recorded in parameter sweeps (coreset ablation)
    fit_seconds: float | None = None
    ci95: dict[str, list[float]] | None = None  # bootstrap [low, high] per metric (experiments.statistics)

    def recorded(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in RECORDED}

    def to_json(self) -> dict[str, object]:
        optional = {f.name for f in fields(self)} - set(RECORDED) - {"confusion"}
        return {k: v for k, v in asdict(self).items() if not (k in optional and v is None)}

    @classmethod
    def from_json(cls, d: dict) -> ClassResult:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


def method_key(method: str, coreset_ratio: float | None) -> str:
    """The method's key in results JSON, thresholds and goldens: ``padim``, ``patchcore@rho=0.05``."""
    return method if coreset_ratio is None else f"{method}@rho={coreset_ratio:g}"


@dataclass
class MethodResult:
    """One method (at one coreset ratio in a sweep) over every class of a scenario."""

    method: str
    coreset_ratio: float | None
    per_class: dict[str, ClassResult]
    thresholds: dict[str, float]
    per_image: dict[str, ScoreSet] = field(default_factory=dict)  # test scores per class, in memory only
    pooled: ClassResult | None = None  # one global tau: all classes' test images together
    shortcut: dict | None = None  # cross-class confusion and feature separation (unified model)

    @property
    def key(self) -> str:
        return method_key(self.method, self.coreset_ratio)

    @property
    def slug(self) -> str:
        """The key as a file-name part: ``patchcore_rho0.05``."""
        return self.key.replace("@", "_").replace("=", "")

    def mean(self) -> dict[str, float | None]:
        return macro_mean({c: r.recorded() for c, r in self.per_class.items()})

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"method": self.method, "coreset_ratio": self.coreset_ratio,
                                  "per_class": {c: r.to_json() for c, r in self.per_class.items()},
                                  "mean": self.mean()}
        if self.pooled is not None:
            out["pooled"] = self.pooled.to_json()
        if self.shortcut is not None:
            out["shortcut"] = self.shortcut
        return out

    @classmethod
    def from_json(cls, d: dict) -> MethodResult:
        per_class = {c: ClassResult.from_json(r) for c, r in d["per_class"].items()}
        return cls(d["method"], d["coreset_ratio"], per_class, {c: r.threshold for c, r in per_class.items()},
                   pooled=ClassResult.from_json(d["pooled"]) if "pooled" in d else None, shortcut=d.get("shortcut"))


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

    def thresholds(self) -> dict[str, dict[str, float]]:
        return {m.key: m.thresholds for m in self.methods}

    def to_json(self) -> dict[str, object]:
        return {"scenario": self.scenario, "description": self.description, "config": self.config,
                "methods": {m.key: m.to_json() for m in self.methods}, "figures": self.figures}

    @classmethod
    def from_json(cls, d: dict) -> ScenarioResult:
        return cls(d["scenario"], d["description"], d["config"],
                   [MethodResult.from_json(m) for m in d["methods"].values()], list(d.get("figures", [])))
