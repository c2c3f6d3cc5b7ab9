"""The run worked out once: a configuration resolved, and the units of work its scenarios need.

``resolve`` turns a configuration into what a run is (data root, dataset, backbone, the preset's
values, device, kNN backend, weights) without reading or writing data; its guarded part
(``Resolved.guarded``) is checked against ``--out`` before the first write.  ``plan_work`` turns
the scenarios, the methods and the prepared categories into the units of work: every model fit
(``ModelKey``, which knows its training scope) and every scored split (``ScoreKey``), and the
feature passes they need.  The runner, the executors, provenance and the guard read these; none
works them out again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from experiments.definition.config import RunConfig
from experiments.definition.methods import METHODS, get_method
from experiments.definition.scenarios import Scenario, select

log = logging.getLogger("ad-repro")
UNIFIED = "unified"  # the scope of one model over every category


class ModelKey(NamedTuple):
    """One model fit: a method on one category (or every category: ``UNIFIED``) of one domain."""

    method: str
    scope: str  # a category, or UNIFIED
    domain: str  # the domain it is fit on
    ratio: float | None  # the coreset ratio of a nested_coreset method, else None

    def trains_on(self, categories: list[str]) -> list[str]:
        """The categories whose train split it is fit on."""
        return list(categories) if self.scope == UNIFIED else [self.scope]


class ScoreKey(NamedTuple):
    """One scored split: a model's scores of one category's split in one domain."""

    model: ModelKey
    category: str
    domain: str
    split: str  # train | val | test | uncertain


@dataclass(frozen=True)
class Resolved:
    """A configuration resolved: what the run is, before any data is read or written."""

    config: RunConfig  # with the preset's values filled in where the configuration left them None
    out: Path
    root: Path  # the data a run reads (a built-in copy: where it is written)
    dataset: str
    backbone: str
    weights: str  # as the caches and the guard know them: a file by its SHA-256, else the name
    device: str  # "cpu", "cuda", "cuda:1"
    knn_backend: str  # ad_core.models.kernels.knn.REGISTRY's name

    def describe(self, categories: list[str]) -> dict[str, object]:
        """The configuration recorded with every result (and guarded per --out)."""
        from ad_core.features.backbones import describe_weights

        c = self.config
        threshold = ("F1-optimal over 1000 steps of the validation score range" if c.split == "study" else
                     "F1-optimal over 1000 steps of the TEST score range (full-test protocol: no validation split, "
                     "as anomalib's default; F1 and accuracy are optimistic, the tau-free metrics are the papers')")
        if c.threshold == "auto":
            threshold += (f"; where the validation set has no anomalous image, the normal-fpr rule: the lowest tau "
                          f"flagging at most {c.threshold_fpr:g} of its normals")
        elif c.threshold == "normal-fpr":
            threshold = (f"normal-fpr (--threshold): the lowest tau flagging at most {c.threshold_fpr:g} of the "
                         "validation normals")
        return {"preset": c.preset, "dataset": self.dataset, "data_root": str(self.root),
                "categories": categories, "backbone": self.backbone, "weights": self.weights,
                "weights_source": describe_weights(self.backbone, c.weights, c.seed), "seed": c.seed,
                "image_size": c.image_size, "resize": c.resize, "split": c.split,
                **{name: spec.describe(c) for name, spec in METHODS.items()},
                "knn_backend": self.knn_backend,
                "threshold": threshold,
                # guarded only where it is not the default, so that folders of earlier runs stay theirs
                **({"threshold_rule": f"{c.threshold}@{c.threshold_fpr:g}"}
                   if (c.threshold, c.threshold_fpr) != ("auto", 0.01) else {})}

    def guarded(self) -> dict[str, object]:
        """The part of ``describe`` that ``--out`` is held to (another value there: refused)."""
        d = self.describe([])
        return {k: d[k] for k in guarded_names() if k in d}


def guarded_names() -> tuple[str, ...]:
    return ("preset", "dataset", "data_root", "backbone", "weights", "seed", "image_size", "resize", "split",
            *METHODS, "knn_backend", "threshold_rule")


def weights_key(weights: str | None) -> str:
    """The weights as the caches and the guard know them: a file by its SHA-256, else the name ('default')."""
    from experiments.execution.cache import file_digest

    if weights and Path(weights).is_file():
        return f"file-sha256:{file_digest(Path(weights))}"
    return weights or "default"


def resolve(config: RunConfig) -> Resolved:
    """What ``config`` runs, reading and writing no data (the methods are checked: an unknown one fails
    here, listing the registered ones)."""
    from ad_core.features.extractor import resolve_device
    from ad_core.models.kernels.knn import resolve_backend
    from experiments.definition.presets import get_preset
    from experiments.execution.prepare import data_root_of

    for method in config.methods:
        get_method(method)
    out = Path(config.out)
    root, dataset = data_root_of(config.data, out, config.dataset)
    backbone = config.resolved_backbone()
    if config.get("padim.n_features") is None:  # the preset's PaDiM dimensions for this backbone
        config = config.with_settings({"padim.n_features": get_preset(config.preset).padim_features(backbone)})
    device = str(resolve_device(config.device))
    return Resolved(config, out, root, dataset, backbone, weights_key(config.weights), device,
                    resolve_backend(device, config.knn_backend))


def runnable(config: RunConfig, categories: list[str]) -> list[Scenario]:
    """The selected scenarios that have a meaning on these categories (the others said, and skipped)."""
    kept = []
    for sc in select(config.scenarios):
        if sc.unified and len(categories) < 2:
            log.warning("scenario %s skipped: one model over all classes needs two or more; this run has one (%s), "
                        "for which it is the per-class model of 'clean' (and the claims that use it)", sc.name,
                        categories[0])
        else:
            kept.append(sc)
    return kept


def scenario_methods(scenario: Scenario, methods: list[str]) -> list[str]:
    """The scenario's methods that the run selected, in registry order."""
    wanted = scenario.methods or tuple(METHODS)
    return [m for m in wanted if m in methods]


def unit_key(config: RunConfig, method: str, scope: str, domain: str, ratio: float | None) -> ModelKey:
    """One model fit's key.  The ratio is a number for a method with a nested coreset (the run's when none is
    given), else None."""
    if get_method(method).nested_coreset:
        ratio = config.get(f"{method}.coreset_ratio") if ratio is None else ratio
    else:
        ratio = None
    return ModelKey(method, scope, domain, ratio)


def model_key(config: RunConfig, sc: Scenario, method: str, ratio: float | None, category: str) -> ModelKey:
    """The model a scenario uses for one class: per class or unified, fit on its fit domain."""
    return unit_key(config, method, UNIFIED if sc.unified else category, sc.fit_domain, ratio)


@dataclass(frozen=True)
class Work:
    """Every model fit and every scored split the scenarios need, in the order the runner meets them."""

    models: tuple[ModelKey, ...]
    scores: tuple[ScoreKey, ...]

    def feature_passes(self, categories: list[str]) -> dict[tuple[str, str], list[str]]:
        """{(category, domain): the splits whose features the units read}."""
        needed: dict[tuple[str, str], set[str]] = {}
        for key in self.models:
            for cat in key.trains_on(categories):
                needed.setdefault((cat, key.domain), set()).add("train")
        for key in self.scores:
            needed.setdefault((key.category, key.domain), set()).add(key.split)
        return {k: sorted(v) for k, v in needed.items()}

    def family(self, key: ModelKey) -> list[ModelKey]:
        """The planned models of ``key``'s training set whose coresets are prefixes of one greedy run,
        largest first ([] for a method without ``nested_coreset``): only the largest is fitted."""
        if not get_method(key.method).nested_coreset:
            return []
        return sorted((k for k in self.models if k[:3] == key[:3]), key=lambda k: -(k.ratio or 0.0))

    def fitted_with(self, key: ModelKey) -> ModelKey | None:
        """The larger model whose fit also gives ``key`` (a prefix of its coreset), or None."""
        family = self.family(key)
        return family[0] if family and (family[0].ratio or 0.0) > (key.ratio or 0.0) else None


def plan_work(config: RunConfig, scenarios: list[Scenario], categories: list[str],
              has_uncertain: Callable[[str, str], bool]) -> Work:
    """The units of work of ``scenarios`` over ``categories`` (``has_uncertain(category, domain)``: whether the
    category holds an uncertain set there, which is scored too)."""
    models: dict[ModelKey, None] = {}
    scores: dict[ScoreKey, None] = {}
    for sc in scenarios:
        for method in scenario_methods(sc, config.methods):
            for ratio in sc.coreset_ratios or (None,):
                for c in categories:
                    key = model_key(config, sc, method, ratio, c)
                    models[key] = None
                    scores[ScoreKey(key, c, sc.calib_domain, "val")] = None
                    scores[ScoreKey(key, c, sc.eval_domain, "test")] = None
                    if has_uncertain(c, sc.eval_domain):
                        scores[ScoreKey(key, c, sc.eval_domain, "uncertain")] = None
    return Work(tuple(models), tuple(scores))
