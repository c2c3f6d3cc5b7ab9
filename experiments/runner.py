"""One runner for every scenario: it sequences fit, score, calibrate and evaluate.

Two steps: ``prepare_run`` writes what the run reads (built-in dataset copy, splits, shifted
copies) and resolves the configuration (backbone, device, kNN backend); ``StudyRun`` opens a
prepared run cheaply (what each Dask task does) and memoises models, scores and thresholds,
shared by the scenarios of a run.  On-disk formats live in ``experiments.cache``, the methods
and their capabilities in ``experiments.methods``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ad_core.data.dataset import ImageSet
from ad_core.data.io import confine_writes
from ad_core.data.samples import Sample
from ad_core.features import FeatureExtractor
from ad_core.features.backbones import describe_weights
from ad_core.features.extractor import resolve_device
from ad_core.models.kernels.knn import resolve_backend
from ad_core.thresholds import calibrate
from ad_core.timing import phase
from experiments.cache import FeatureStore, ModelStore, ScoreCache, file_digest, inputs_of, model_digest
from experiments.config import RunConfig
from experiments.evaluate import (
    cross_class_confusion,
    evaluate,
    evaluate_by_defect,
    evaluate_uncertain,
    feature_separation,
)
from experiments.fingerprint import fingerprint, log
from experiments.methods import METHODS, AnomalyModel, MethodSpec, get_method
from experiments.prepare import (
    PreparedCategory,
    default_categories,
    prepare_categories,
    resolve_data_root,
    resolve_layout,
)
from experiments.presets import get_preset
from experiments.results import MethodResult, ScenarioResult, ScoreSet
from experiments.scenarios import Scenario, select
from experiments.statistics import class_intervals

EXTRACTED_LAYERS = ("layer1", "layer2", "layer3")  # one backbone pass serves every method
FEW_TEST_IMAGES = 5  # normal or defective test images of a class below which its numbers are called anecdotal

ModelKey = tuple[str, str, str, "float | None"]  # (method, scope: a category or "unified", fit domain, ratio)
ScoreKey = tuple[ModelKey, str, str, str]  # (model, category, domain, split)


@dataclass(frozen=True)
class PreparedRun:
    """What ``prepare_run`` made and resolved: everything a ``StudyRun`` opens without writing data."""

    config: RunConfig  # with the preset's PaDiM dimensions filled in
    out: Path
    root: Path
    dataset: str
    backbone: str
    categories: list[str]
    prepared: dict[str, PreparedCategory]
    device: str  # resolved: "cpu", "cuda", "cuda:1"
    knn_backend: str  # resolved: ad_core.models.kernels.knn.REGISTRY's name
    layout: str = "mvtec"  # ad_core.data.layouts: the reader of the data

    @property
    def has_masks(self) -> bool:
        return all(p.clean.has_masks for p in self.prepared.values())


def prepare_run(config: RunConfig) -> PreparedRun:
    """Write the run's data (built-in copy, splits, shifted copies) and resolve its settings."""
    for method in config.methods:
        get_method(method)  # an unknown name fails here, listing the registered ones
    out = Path(config.out)
    root, dataset = resolve_data_root(config.data, out, config.dataset, config.seed)
    backbone = config.resolved_backbone()
    if config.padim_features is None:
        config = dataclasses.replace(config, padim_features=get_preset(config.preset).padim_features(backbone))
    layout = resolve_layout(config.data, root, dataset, config.layout)
    categories = config.categories or default_categories(root, dataset, config.data is None, layout)
    shifted = any(d == "shift" for sc in select(config.scenarios)
                  for d in (sc.fit_domain, sc.calib_domain, sc.eval_domain))
    prepared = prepare_categories(root, list(categories), out, config.seed, config.progress, config.split, shifted,
                                  layout.name, config.threshold)
    for c, p in prepared.items():
        counts = p.splits.counts()
        n_good, n_bad = counts["test_normal"], counts["test_anomalous"]
        if min(n_good, n_bad) < FEW_TEST_IMAGES:
            log.warning("%s: the test split holds %d normal and %d defective image(s): one swapped pair moves its "
                        "image AUROC by %.3g, so its numbers are anecdotal; add test images", c, n_good, n_bad,
                        1 / max(1, n_good * n_bad))
    device = str(resolve_device(config.device))
    return PreparedRun(config, out, root, dataset, backbone, list(categories), prepared, device,
                       resolve_backend(device, config.knn_backend), layout.name)


@dataclass
class FittedModel:
    key: ModelKey
    name: str  # models/<name><suffix>
    model: AnomalyModel
    meta: dict  # fit_seconds, n_train_images and the model's fit_summary()


class StudyRun:
    """A prepared run's feature store + memoised models/scores for one ``--out`` folder."""

    def __init__(self, config: RunConfig | PreparedRun):
        prep = config if isinstance(config, PreparedRun) else prepare_run(config)
        self.prep = prep
        config = self.config = prep.config
        self.out, self.root, self.dataset, self.backbone = prep.out, prep.root, prep.dataset, prep.backbone
        self.categories, self.prepared, self.has_masks = prep.categories, prep.prepared, prep.has_masks
        self.device, self.knn_backend, self.layout = prep.device, prep.knn_backend, prep.layout
        confine_writes(self.out, config.feature_cache)  # in a Dask worker too: no write through a link below them
        weights = weights_key(config.weights)
        self.store = FeatureStore(
            Path(config.feature_cache) if config.feature_cache else self.out / "cache" / "features",
            {"backbone": self.backbone, "weights": weights, "layers": list(EXTRACTED_LAYERS),
             "image_size": config.image_size, **({"resize": config.resize} if config.resize else {}),
             "fingerprint": fingerprint("features"),
             # features depend on the seed only through random weights: seeds share pretrained features
             "seed": config.seed if weights == "random" else None},
            lambda: FeatureExtractor(self.backbone, EXTRACTED_LAYERS, config.weights,
                                     self.device, config.batch_size, config.seed),
            config.batch_size, config.progress, config.preprocessor(), int(config.feature_memory_gb * 2**30))
        code = fingerprint("models")
        self.model_store = ModelStore(self.out / "models", self.device, code, self.knn_backend)
        self.score_cache = ScoreCache(self.out / "cache" / "scores", code)
        self._models: dict[ModelKey, FittedModel] = {}
        self._scores: dict[tuple[str, str, str, str], ScoreSet] = {}
        self.planned_models = set(self.plan(select(config.scenarios))[0])
        self._pixel_ci: dict[int, dict] = {}  # pixel intervals do not depend on tau: once per test ScoreSet

    # -- data -------------------------------------------------------------------------
    def samples(self, category: str, domain: str, split: str) -> list[Sample]:
        p = self.prepared[category]
        files = p.clean if domain == "clean" else p.shifted
        if files is None:
            raise RuntimeError(f"no shifted copy of {category}: the run's scenarios did not ask for one")
        if split == "uncertain":
            return files.uncertain
        names = {"train": p.splits.train, "val": p.splits.val(), "test": p.splits.test()}[split]
        return p.splits.samples(files, names)

    def image_file(self, category: str, domain: str, relpath: str) -> Path:
        p = self.prepared[category]
        return (p.clean if domain == "clean" else p.shifted).by_relpath()[relpath].path

    # -- models -----------------------------------------------------------------------
    def model_name(self, method: str, scope: str, domain: str, ratio: float | None) -> str:
        name = f"{method}_{scope}_{domain}"
        if ratio is not None and ratio != self.config.coreset_ratio:
            name += f"_coreset_{round(ratio * 100):02d}"
        return name

    def model_key(self, sc: Scenario, method: str, ratio: float | None, category: str) -> ModelKey:
        """The model a scenario uses for one class: per class or unified, fit on its fit domain.  The
        ratio is a number for a method with a coreset (the run's when the scenario sweeps none), else None."""
        if get_method(method).nested_coreset:
            ratio = self.config.coreset_ratio if ratio is None else ratio
        else:
            ratio = None
        return method, "unified" if sc.unified else category, sc.fit_domain, ratio

    def plan(self, scenarios: list[Scenario]) -> tuple[list[ModelKey], list[ScoreKey]]:
        """Every model fit and every score split the scenarios need (what ``_run_method`` asks for)."""
        models, scores = {}, {}
        for sc in scenarios:
            for method in self.scenario_methods(sc):
                for ratio in sc.coreset_ratios or (None,):
                    for c in self.categories:
                        key = self.model_key(sc, method, ratio, c)
                        models[key] = None
                        scores[(key, c, sc.calib_domain, "val")] = None
                        scores[(key, c, sc.eval_domain, "test")] = None
                        if self.samples(c, sc.eval_domain, "uncertain"):
                            scores[(key, c, sc.eval_domain, "uncertain")] = None
        return list(models), list(scores)

    def family(self, key: ModelKey) -> list[ModelKey]:
        """The planned models of ``key``'s training set whose coresets are prefixes of one greedy run,
        largest first ([] for a method without ``nested_coreset``): only the largest is fitted."""
        method, scope, domain, _ = key
        if not get_method(method).nested_coreset:
            return []
        return sorted((k for k in self.planned_models if k[:3] == (method, scope, domain)), key=lambda k: -k[3])

    def fitted_with(self, key: ModelKey) -> ModelKey | None:
        """The larger model whose fit also gives ``key`` (a prefix of its coreset), or None."""
        family = self.family(key)
        return family[0] if family and family[0][3] > key[3] else None

    def train_samples(self, key: ModelKey) -> list[Sample]:
        method, scope, domain, _ = key
        scopes = self.categories if scope == "unified" else [scope]
        return [s for cat in scopes for s in self.samples(cat, domain, "train")]

    def model(self, method: str, scope: str, domain: str, ratio: float | None = None) -> FittedModel:
        """The fitted model (memoised, saved under models/, reloaded on a rerun) and its fit record."""
        spec = get_method(method)
        key = (method, scope, domain, (self.config.coreset_ratio if ratio is None else ratio)
               if spec.nested_coreset else None)
        if key in self._models:
            return self._models[key]
        name = self.model_name(*key)
        train = self.train_samples(key)
        inputs = inputs_of(train)
        loaded = self.model_store.load(name, spec, inputs)
        larger = self.fitted_with(key)
        if loaded is None and larger is not None:
            self.model(*larger)  # fits it, and saves its prefixes
            if key not in self._models:  # its prefix was not saved with it (e.g. a run killed in between)
                self._derive(self._models[larger], key, spec)
            return self._models[key]
        if loaded is None:
            model = spec.build(self.config, self.device, **({} if key[3] is None else {"coreset_ratio": key[3]}))
            t0 = time.perf_counter()
            model.fit(self.store.batches(train))
            meta = {"fit_seconds": time.perf_counter() - t0, "n_train_images": len(train), **model.fit_summary()}
            loaded = model, self.model_store.save(name, spec, model, meta, inputs)
        self._models[key] = fitted = FittedModel(key, name, *loaded)
        family = self.family(key)
        for smaller in family[1:] if family and family[0] == key else []:
            if smaller in self._models:
                continue
            found = self.model_store.load(self.model_name(*smaller), spec, inputs)
            if found is not None:
                self._models[smaller] = FittedModel(smaller, self.model_name(*smaller), *found)
            else:
                self._derive(fitted, smaller, spec)
        return fitted

    def _derive(self, larger: FittedModel, key: ModelKey, spec: MethodSpec) -> None:
        """Save (and memoise) the prefix model ``key`` of a fitted larger coreset (``nested_coreset``)."""
        ratio = key[3]
        model = larger.model.with_ratio(ratio)
        meta = {"fit_seconds": larger.model.fit_seconds_at(ratio), "n_train_images": larger.meta["n_train_images"],
                **model.fit_summary(), "prefix_of": larger.name}
        name = self.model_name(*key)
        record = self.model_store.save(name, spec, model, meta, larger.meta["inputs"])
        self._models[key] = FittedModel(key, name, model, record)

    # -- scores -----------------------------------------------------------------------
    def scores(self, fitted: FittedModel, category: str, domain: str, split: str) -> ScoreSet:
        """Scores of one split (cached); test maps are kept (memory-mapped), other splits' dropped."""
        key = (fitted.name, category, domain, split)
        if key in self._scores:
            return self._scores[key]
        samples = self.samples(category, domain, split)
        keep_maps = split == "test"
        inputs = inputs_of(samples)
        cached = self.score_cache.load(fitted.name, domain, category, split, keep_maps, model_digest(fitted.meta),
                                       inputs)
        if cached is None:
            scores, maps = self._compute_scores(fitted, category, domain, split, samples)
            maps = self.score_cache.save(fitted.name, domain, category, split, scores, maps, keep_maps,
                                         model_digest(fitted.meta), inputs)
        else:
            scores, maps = cached
        masks = None
        if keep_maps and self.has_masks:
            with phase("masks"):
                masks = ImageSet(samples, self.config.preprocessor()).masks()
        result = ScoreSet([s.relpath for s in samples], np.array([s.label for s in samples]), scores, maps, masks)
        self._scores[key] = result
        return result

    def _compute_scores(self, fitted: FittedModel, category: str, domain: str, split: str,
                        samples: list[Sample]) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's (scores, maps) of one split.  In a family of coreset prefixes (the ablation's
        1/5/10%), the members that lack this split are scored in the same search and cached."""
        family = self._prefix_family(fitted)
        keep_maps = split == "test"
        inputs = inputs_of(samples)
        others = [f for f in family if f.name != fitted.name and (f.name, category, domain, split) not in self._scores
                  and self.score_cache.load(f.name, domain, category, split, keep_maps, model_digest(f.meta),
                                            inputs) is None]
        if not others:
            return fitted.model.score(self.store.batches(samples))
        group = [fitted, *others]
        results = family[0].model.score_nested(self.store.batches(samples), [f.model.coreset_ratio for f in group])
        for member, (scores, maps) in zip(others, results[1:]):
            self.score_cache.save(member.name, domain, category, split, scores, maps, keep_maps,
                                  model_digest(member.meta), inputs)
        return results[0]

    def _prefix_family(self, fitted: FittedModel) -> list[FittedModel]:
        """The planned models whose banks are prefixes of one greedy run with ``fitted``'s, largest first
        (empty when there is no such family: ``nested_coreset`` methods score them in one search)."""
        family = self.family(fitted.key)
        return [self.model(*k) for k in family] if len(family) > 1 else []

    # -- scenarios --------------------------------------------------------------------
    def scenario_methods(self, scenario: Scenario) -> list[str]:
        """The scenario's methods that this run selected, in registry order."""
        wanted = scenario.methods or tuple(METHODS)
        return [m for m in wanted if m in self.config.methods]

    def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        methods = [self._run_method(scenario, method, ratio)
                   for method in self.scenario_methods(scenario)
                   for ratio in scenario.coreset_ratios or (None,)]
        return ScenarioResult(scenario.name, scenario.description, self.describe(), methods)

    def _run_method(self, sc: Scenario, method: str, ratio: float | None) -> MethodResult:
        def fitted(cat: str) -> FittedModel:
            return self.model(*self.model_key(sc, method, ratio, cat))

        val = {c: self.scores(fitted(c), c, sc.calib_domain, "val") for c in self.categories}
        cfg = self.config
        if sc.global_threshold:
            pooled = ScoreSet.concat(list(val.values()))
            tau_global, why_global = calibrate(pooled.scores, pooled.labels, cfg.threshold, cfg.threshold_fpr)
            chosen = {c: (tau_global, why_global) for c in self.categories}
        else:
            chosen = {c: calibrate(v.scores, v.labels, cfg.threshold, cfg.threshold_fpr) for c, v in val.items()}
        taus = {c: t.value for c, (t, _) in chosen.items()}
        result = MethodResult(method, ratio, {}, taus)
        for c in self.categories:
            model = fitted(c)
            test = result.per_image[c] = self.scores(model, c, sc.eval_domain, "test")
            metrics = result.per_class[c] = evaluate(test, taus[c])
            metrics.threshold_rule = f"{chosen[c][0].rule} ({chosen[c][1]})"
            if self.prepared[c].clean.capabilities.by_defect_type and metrics.image_metrics_absent is None:
                metrics.by_defect = evaluate_by_defect(test, taus[c])  # the benchmark reports each type apart
            if self.config.bootstrap and metrics.image_metrics_absent is None:
                metrics.ci95 = class_intervals(test, taus[c], self.config.seed, self._pixel_ci)
            if self.samples(c, sc.eval_domain, "uncertain"):
                uncertain = self.scores(model, c, sc.eval_domain, "uncertain")
                metrics.uncertain = evaluate_uncertain(uncertain, test, taus[c])
            if sc.coreset_ratios is not None:
                metrics.memory_bank_size = model.meta.get("memory_bank_size")
                metrics.fit_seconds = model.meta["fit_seconds"]
        if sc.global_threshold:
            result.pooled = evaluate(ScoreSet.concat(list(result.per_image.values())), tau_global.value)
            result.pooled.threshold_rule = f"{tau_global.rule} ({why_global})"
        if sc.shortcut_analysis:
            result.shortcut = self._shortcut(result.per_image, taus)
        return result

    @phase("shortcut analysis")
    def _shortcut(self, tests: dict[str, ScoreSet], taus: dict[str, float]) -> dict[str, object]:
        normals = {c: t.scores[t.labels == 0] for c, t in tests.items()}
        feats, classes = [], []
        for c in self.categories:
            for batch in self.store.batches(self.samples(c, "clean", "train"), layers=["layer3"]):
                feats.append(batch["layer3"].mean(dim=(2, 3)).numpy())
                classes += [c] * batch["layer3"].shape[0]
        return {"cross_class_confusion": cross_class_confusion(normals, taus),
                "feature_separation": feature_separation(np.concatenate(feats), np.array(classes))}

    def describe(self) -> dict[str, object]:
        """The configuration recorded with every result (and guarded per --out)."""
        return describe_config(self.config, self.dataset, self.root, self.categories, self.backbone,
                               self.store.config["weights"], self.knn_backend)


def weights_key(weights: str | None) -> str:
    """The weights as the caches and the guard know them: a file by its SHA-256, else the name ('default')."""
    if weights and Path(weights).is_file():
        return f"file-sha256:{file_digest(Path(weights))}"
    return weights or "default"


def describe_config(c: RunConfig, dataset: str, root: Path, categories: list[str], backbone: str, weights: str,
                    knn_backend: str) -> dict[str, object]:
    """A run's recorded configuration (``StudyRun.describe``) from its settings and resolved names."""
    threshold = ("F1-optimal over 1000 steps of the validation score range" if c.split == "study" else
                 "F1-optimal over 1000 steps of the TEST score range (full-test protocol: no validation split, "
                 "as anomalib's default; F1 and accuracy are optimistic, the tau-free metrics are the papers')")
    if c.threshold == "auto":
        threshold += (f"; where the validation set has no anomalous image, the normal-fpr rule: the lowest tau "
                      f"flagging at most {c.threshold_fpr:g} of its normals")
    elif c.threshold == "normal-fpr":
        threshold = (f"normal-fpr (--threshold): the lowest tau flagging at most {c.threshold_fpr:g} of the "
                     "validation normals")
    return {"preset": c.preset, "dataset": dataset, "data_root": str(root),
            "categories": categories, "backbone": backbone, "weights": weights,
            "weights_source": describe_weights(backbone, c.weights, c.seed), "seed": c.seed,
            "image_size": c.image_size, "resize": c.resize, "split": c.split,
            **{name: spec.describe(c) for name, spec in METHODS.items()},
            "knn_backend": knn_backend,
            "threshold": threshold,
            # guarded only where it is not the default, so that folders of earlier runs stay theirs
            **({"threshold_rule": f"{c.threshold}@{c.threshold_fpr:g}"}
               if (c.threshold, c.threshold_fpr) != ("auto", 0.01) else {})}


GUARDED = ("preset", "dataset", "data_root", "backbone", "weights", "seed", "image_size", "resize", "split", *METHODS,
           "knn_backend", "threshold_rule")


def planned_fingerprint(config: RunConfig) -> dict[str, object]:
    """The guarded part of the configuration a run of ``config`` will have, computed without writing
    anything (``--out`` is checked against it before the first write)."""
    from experiments.prepare import data_root_of

    root, dataset = data_root_of(config.data, Path(config.out), config.dataset)
    backbone = config.resolved_backbone()
    if config.padim_features is None:
        config = dataclasses.replace(config, padim_features=get_preset(config.preset).padim_features(backbone))
    device = str(resolve_device(config.device))
    d = describe_config(config, dataset, root, list(config.categories or []), backbone, weights_key(config.weights),
                        resolve_backend(device, config.knn_backend))
    return {k: d[k] for k in GUARDED if k in d}


def config_fingerprint(run: StudyRun) -> dict[str, object]:
    """The guarded part of a prepared run's configuration (equal to ``planned_fingerprint`` of its config)."""
    d = run.describe()
    return {k: d[k] for k in GUARDED if k in d}


