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
from typing import Any, NamedTuple

from ad_core.data import layouts
from ad_core.errors import DatasetError
from experiments.definition.config import RunConfig
from experiments.definition.datasets import BUILT_IN, derived_domains
from experiments.definition.methods import METHODS, MethodSpec, get_method
from experiments.definition.scenarios import SCENARIOS, Scenario, select

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
    domains: tuple[str, ...] = ()  # the derived domains its scenarios use (copies to write), in registry order
    layout: str = "mvtec"  # ad_core.data.layouts: the reader of its data (a built-in dataset's own, or detected)
    categories: tuple[str, ...] = ()  # --categories, a built-in dataset's in their order, or every one on disk

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
        return {"preset": c.preset, "dataset": self.dataset, "data_root": str(self.root), "layout": self.layout,
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


def data_root_of(data: str | Path | None, out: Path, dataset: str = "embedded") -> tuple[Path, str]:
    """(root, dataset name) a run reads, without writing: the user's folder, or where the built-in copy goes."""
    if data is not None:
        root = Path(data).expanduser().resolve()
        return root, root.name
    if dataset not in BUILT_IN:
        raise DatasetError(f"Unknown built-in dataset {dataset!r}; choose from {tuple(BUILT_IN)} or pass --data.")
    return Path(out) / "data" / dataset, dataset


def resolve_layout(data: str | Path | None, root: Path, dataset: str, forced: str = "auto",
                   wanted: list[str] | None = None) -> tuple[layouts.Layout, list[str]]:
    """(the reader of the run's data, its categories): a built-in dataset's own reader (embedded: MVTec AD's;
    ELPV: image-level) and categories in their documented order; else ``--layout`` or the one
    ``layouts.detect`` finds (said in one line) and every category of that layout on disk.  ``wanted``:
    the categories asked for (--categories), kept as given.

    ``data`` None (no --data given) is what makes a dataset built-in: a user's folder that happens to be
    named "embedded" or "elpv" is detected and listed like any other."""
    if data is None:
        built_in = BUILT_IN[dataset]
        return layouts.LAYOUTS[built_in.layout], list(wanted or built_in.categories())
    layout = layouts.detect(root, forced)
    log.info("data %s: layout %s, %s%s", root, layout.name, layout.title, " (--layout)" if forced != "auto" else "")
    cats = list(wanted or layouts.categories(root, layout))
    if not cats:
        raise DatasetError(f"No category folders found under {root}.")
    return layout, cats


def resolve(config: RunConfig) -> Resolved:
    """What ``config`` runs, reading no data and writing nothing (a user's folder is listed to find its layout
    and categories; the methods are checked: an unknown one fails here, listing the registered ones)."""
    from ad_core.features.extractor import resolve_device
    from ad_core.models.kernels.knn import resolve_backend
    from experiments.definition.presets import get_preset

    out = Path(config.out)
    root, dataset = data_root_of(config.data, out, config.dataset)
    weights = weights_key(config.weights)
    for method in config.methods:
        get_method(method)
    domains = tuple(derived_domains({d for sc in select(config.scenarios)
                                     for d in (sc.fit_domain, sc.calib_domain, sc.eval_domain)}))
    backbone = config.resolved_backbone()
    if config.get("padim.n_features") is None:  # the preset's PaDiM dimensions for this backbone
        n_features = get_preset(config.preset).padim_features(backbone)
        config = config.with_settings({"padim.n_features": n_features})
    layout, categories = resolve_layout(config.data, root, dataset, config.layout, config.categories)
    device = str(resolve_device(config.device))
    return Resolved(config, out, root, dataset, backbone, weights, device, resolve_backend(device, config.knn_backend),
                    domains, layout.name, tuple(categories))


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


def model_key(config: RunConfig, method: str, scope: str, domain: str, ratio: float | None) -> ModelKey:
    """One model fit's key.  The ratio is a number for a method with a nested coreset (the run's when none is
    given), else None."""
    if METHODS[method].nested_coreset:  # a registered method: ``resolve`` checked every one
        ratio = config.get(f"{method}.coreset_ratio") if ratio is None else ratio
    else:
        ratio = None
    return ModelKey(method, scope, domain, ratio)


@dataclass(frozen=True)
class Unit:
    """One planned model fit, worked out: its file name, how it is built and which fit gives it."""

    key: ModelKey
    name: str  # models/<name><suffix>
    spec: MethodSpec
    overrides: dict[str, Any]  # constructor arguments beyond the configuration's (a family member's ratio)
    fitted_with: ModelKey | None  # the larger model whose fit also gives this one (a prefix of its coreset)
    family: tuple[ModelKey, ...]  # the planned models of its training set that are prefixes of one greedy run,
    # largest first: only the largest is fitted, and all are scored in one search (() for one alone)

    @property
    def prefixes(self) -> tuple[ModelKey, ...]:
        """The smaller members its fit gives (a family's largest only)."""
        return self.family[1:] if self.family and self.family[0] == self.key else ()


@dataclass(frozen=True)
class Work:
    """Every model fit and every scored split the scenarios need, in the order the runner meets them.

    ``units``: each fit worked out; ``uses``: (scenario, method, ratio, category) -> the model it scores
    with (in place of a scenario, ``submission`` or ``official_maps``: the clean per-class model that writes
    those maps); ``methods``: scenario -> its (method, ratio) pairs; ``ratios``: the run's coreset ratio per
    method with a nested coreset (a key asked for without one gets it)."""

    scores: tuple[ScoreKey, ...]
    units: dict[ModelKey, Unit]
    uses: dict[tuple[str, str, float | None, str], ModelKey]
    methods: dict[str, tuple[tuple[str, float | None], ...]]
    ratios: dict[str, float]

    @property
    def models(self) -> tuple[ModelKey, ...]:
        """Every model fit, in the order the runner meets them."""
        return tuple(self.units)

    def feature_passes(self, categories: list[str]) -> dict[tuple[str, str], list[str]]:
        """{(category, domain): the splits whose features the units read}."""
        needed: dict[tuple[str, str], set[str]] = {}
        for key in self.models:
            for cat in key.trains_on(categories):
                needed.setdefault((cat, key.domain), set()).add("train")
        for key in self.scores:
            needed.setdefault((key.category, key.domain), set()).add(key.split)
        return {k: sorted(v) for k, v in needed.items()}

    def key(self, method: str, scope: str, domain: str, ratio: float | None = None) -> ModelKey:
        """A planned model's key (a nested method's ratio: the run's when none is given)."""
        if method in self.ratios:
            return ModelKey(method, scope, domain, self.ratios[method] if ratio is None else ratio)
        return ModelKey(method, scope, domain, None)


def _units(config: RunConfig, keys: list[ModelKey]) -> dict[ModelKey, Unit]:
    """Each planned fit worked out: its name, method, overrides and the family of prefixes it belongs to."""
    units = {}
    for key in keys:
        spec = METHODS[key.method]
        name = f"{key.method}_{key.scope}_{key.domain}"
        if key.ratio is not None and key.ratio != config.get(f"{key.method}.coreset_ratio"):
            name += f"_coreset_{round(key.ratio * 100):02d}"
        family = tuple(sorted((k for k in keys if k[:3] == key[:3]), key=lambda k: -(k.ratio or 0.0))
                       ) if spec.nested_coreset else ()
        larger = family[0] if family and (family[0].ratio or 0.0) > (key.ratio or 0.0) else None
        units[key] = Unit(key, name, spec, {} if key.ratio is None else {"coreset_ratio": key.ratio}, larger,
                          family if len(family) > 1 else ())
    return units


def plan_work(config: RunConfig, scenarios: list[Scenario], categories: list[str],
              has_uncertain: Callable[[str, str], bool], submitted: bool = False) -> Work:
    """The units of work of ``scenarios`` over ``categories`` (``has_uncertain(category, domain)``: whether the
    category holds an uncertain set there, which is scored too; ``submitted``: the clean models of every
    method also score the private test sets, as ``experiments.records.submission`` writes them; with
    ``config.official_maps`` they score every test image, as ``experiments.records.official_maps`` writes them)."""
    models: dict[ModelKey, None] = {}
    scores: dict[ScoreKey, None] = {}
    uses: dict[tuple[str, str, float | None, str], ModelKey] = {}
    methods: dict[str, tuple[tuple[str, float | None], ...]] = {}
    for sc in scenarios:
        methods[sc.name] = tuple((m, r) for m in scenario_methods(sc, config.methods)
                                 for r in sc.coreset_ratios or (None,))
        for method, ratio in methods[sc.name]:
            for c in categories:
                key = uses[(sc.name, method, ratio, c)] = model_key(
                    config, method, UNIFIED if sc.unified else c, sc.fit_domain, ratio)
                models[key] = None
                scores[ScoreKey(key, c, sc.calib_domain, "val")] = None
                scores[ScoreKey(key, c, sc.eval_domain, "test")] = None
                if has_uncertain(c, sc.eval_domain):
                    scores[ScoreKey(key, c, sc.eval_domain, "uncertain")] = None
    # the clean scenario's per-class models, which also write the maps of MVTec AD 2's private sets
    # (``submission``) and, with --official-maps, every test image's map (``official_maps``)
    for use in (("submission",) if submitted else ()) + (("official_maps",) if config.official_maps else ()):
        for method in config.methods:
            for c in categories:
                key = uses[(use, method, None, c)] = model_key(config, method, c, SCENARIOS["clean"].fit_domain, None)
                models.setdefault(key, None)
    ratios = {m: config.get(f"{m}.coreset_ratio") for m in config.methods if METHODS[m].nested_coreset}
    return Work(tuple(scores), _units(config, list(models)), uses, methods, ratios)
