"""One runner for every scenario: it sequences fit, score, calibrate and evaluate.

Models, scores and thresholds are computed once and shared by the scenarios of a run;
their on-disk formats live in ``experiments.cache``, the methods in ``experiments.methods``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ad_core import SEED
from ad_core.data.dataset import ImageSet
from ad_core.data.layout import Sample
from ad_core.data.preprocess import Preprocessor
from ad_core.features import FeatureExtractor
from ad_core.features.backbones import describe_weights
from ad_core.features.extractor import resolve_device
from ad_core.thresholds import f1_optimal_threshold
from experiments.cache import FeatureStore, ModelStore, ScoreCache, file_digest
from experiments.evaluate import cross_class_confusion, evaluate, evaluate_uncertain, feature_separation
from experiments.fingerprint import fingerprint
from experiments.methods import METHODS, AnomalyModel, get_method
from experiments.prepare import BUILT_IN, PreparedCategory, default_categories, prepare_category, resolve_data_root
from experiments.results import MethodResult, ScenarioResult, ScoreSet
from experiments.scenarios import Scenario
from experiments.statistics import class_intervals

EXTRACTED_LAYERS = ("layer1", "layer2", "layer3")  # one backbone pass serves every method


@dataclass
class RunConfig:
    """Everything a run depends on; the number-affecting part is guarded per ``--out``."""

    out: Path = Path("outputs")
    data: str | None = None
    dataset: str = "embedded"  # built-in dataset used when data is None: embedded | elpv
    categories: list[str] | None = None
    scenarios: list[str] | None = None
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    backbone: str | None = None  # None: resnet50 (the study's), efficientnet_lite0 on embedded data
    weights: str | None = None
    device: str = "auto"
    seed: int = SEED
    batch_size: int = 16
    coreset_ratio: float = 0.05
    k: int = 9
    projection_dim: int = 128
    padim_features: int = 100
    image_size: int = 224  # preprocessing, masks, maps and metrics all work at this size
    progress: bool = True
    bootstrap: bool = True  # 95% intervals per class (1,000 stratified resamples)
    feature_cache: Path | None = None  # default <out>/cache/features; seeds of one study share one

    def resolved_backbone(self, dataset: str) -> str:
        if self.backbone:
            return self.backbone
        return "efficientnet_lite0" if dataset in BUILT_IN and self.data is None else "resnet50"


@dataclass
class FittedModel:
    name: str  # models/<name><suffix>
    model: AnomalyModel
    meta: dict  # fit_seconds, n_train_images and the model's fit_summary()


class StudyRun:
    """Prepared data + feature store + memoised models/scores for one ``--out`` folder."""

    def __init__(self, config: RunConfig):
        for method in config.methods:
            get_method(method)  # an unknown name fails here, listing the registered ones
        self.config = config
        self.out = Path(config.out)
        self.root, self.dataset = resolve_data_root(config.data, self.out, config.dataset, config.seed)
        self.backbone = config.resolved_backbone(self.dataset)
        self.categories = config.categories or default_categories(self.root, self.dataset, built_in=config.data is None)
        self.prepared: dict[str, PreparedCategory] = {
            c: prepare_category(self.root, c, self.out, config.seed, config.progress) for c in self.categories}
        self.has_masks = all(p.clean.has_masks for p in self.prepared.values())
        weights = config.weights
        if weights and Path(weights).is_file():
            weights = f"file-sha256:{file_digest(Path(weights))}"
        self.store = FeatureStore(
            Path(config.feature_cache) if config.feature_cache else self.out / "cache" / "features",
            {"backbone": self.backbone, "weights": weights or "default", "layers": list(EXTRACTED_LAYERS),
             "image_size": config.image_size, "fingerprint": fingerprint("features"),
             # features depend on the seed only through random weights: seeds share pretrained features
             "seed": config.seed if weights == "random" else None},
            lambda: FeatureExtractor(self.backbone, EXTRACTED_LAYERS, config.weights,
                                     config.device, config.batch_size, config.seed),
            config.batch_size, config.progress, config.image_size)
        self.device = str(resolve_device(config.device))
        code = fingerprint("models")
        self.model_store = ModelStore(self.out / "models", self.device, code)
        self.score_cache = ScoreCache(self.out / "cache" / "scores", code)
        self._models: dict[str, FittedModel] = {}
        self._scores: dict[tuple[str, str, str, str], ScoreSet] = {}
        self._pixel_ci: dict[int, dict] = {}  # pixel intervals do not depend on tau: once per test ScoreSet

    # -- data -------------------------------------------------------------------------
    def samples(self, category: str, domain: str, split: str) -> list[Sample]:
        p = self.prepared[category]
        files = p.clean if domain == "clean" else p.shifted
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

    def model(self, method: str, scope: str, domain: str, ratio: float | None = None) -> FittedModel:
        """The fitted model (memoised, saved under models/, reloaded on a rerun) and its fit record."""
        name = self.model_name(method, scope, domain, ratio)
        if name in self._models:
            return self._models[name]
        spec = get_method(method)
        loaded = self.model_store.load(name, spec)
        if loaded is None:
            scopes = self.categories if scope == "unified" else [scope]
            train = [s for cat in scopes for s in self.samples(cat, domain, "train")]
            model = spec.build(self.config, self.device, **({} if ratio is None else {"coreset_ratio": ratio}))
            t0 = time.perf_counter()
            model.fit(self.store.batches(train))
            meta = {"fit_seconds": time.perf_counter() - t0, "n_train_images": len(train), **model.fit_summary()}
            self.model_store.save(name, spec, model, meta)
            loaded = model, meta
        self._models[name] = FittedModel(name, *loaded)
        return self._models[name]

    # -- scores -----------------------------------------------------------------------
    def scores(self, fitted: FittedModel, category: str, domain: str, split: str) -> ScoreSet:
        """Scores of one split (cached); test maps are kept (memory-mapped), other splits' dropped."""
        key = (fitted.name, category, domain, split)
        if key in self._scores:
            return self._scores[key]
        samples = self.samples(category, domain, split)
        keep_maps = split == "test"
        cached = self.score_cache.load(fitted.name, domain, category, split, need_maps=keep_maps)
        if cached is None:
            scores, maps = fitted.model.score(self.store.batches(samples))
            maps = self.score_cache.save(fitted.name, domain, category, split, scores, maps, keep_maps)
        else:
            scores, maps = cached
        masks = None
        if keep_maps and self.has_masks:
            masks = ImageSet(samples, Preprocessor(size=self.config.image_size)).masks()
        result = ScoreSet([s.relpath for s in samples], np.array([s.label for s in samples]), scores, maps, masks)
        self._scores[key] = result
        return result

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
            return self.model(method, "unified" if sc.unified else cat, sc.fit_domain, ratio)

        val = {c: self.scores(fitted(c), c, sc.calib_domain, "val") for c in self.categories}
        if sc.global_threshold:
            pooled = ScoreSet.concat(list(val.values()))
            tau_global = f1_optimal_threshold(pooled.scores, pooled.labels).value
            taus = {c: tau_global for c in self.categories}
        else:
            taus = {c: f1_optimal_threshold(v.scores, v.labels).value for c, v in val.items()}
        result = MethodResult(method, ratio, {}, taus)
        for c in self.categories:
            model = fitted(c)
            test = result.per_image[c] = self.scores(model, c, sc.eval_domain, "test")
            metrics = result.per_class[c] = evaluate(test, taus[c])
            if self.config.bootstrap:
                metrics.ci95 = class_intervals(test, taus[c], self.config.seed, self._pixel_ci)
            if self.samples(c, sc.eval_domain, "uncertain"):
                uncertain = self.scores(model, c, sc.eval_domain, "uncertain")
                metrics.uncertain = evaluate_uncertain(uncertain, test, taus[c])
            if sc.coreset_ratios is not None:
                metrics.memory_bank_size = model.meta.get("memory_bank_size")
                metrics.fit_seconds = model.meta["fit_seconds"]
        if sc.global_threshold:
            result.pooled = evaluate(ScoreSet.concat(list(result.per_image.values())), tau_global)
        if sc.shortcut_analysis:
            result.shortcut = self._shortcut(result.per_image, taus)
        return result

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
        c = self.config
        return {"dataset": self.dataset, "data_root": str(self.root), "categories": self.categories,
                "backbone": self.backbone, "weights": self.store.config["weights"],
                "weights_source": describe_weights(self.backbone, c.weights, c.seed), "seed": c.seed,
                "image_size": c.image_size,
                **{name: spec.describe(c) for name, spec in METHODS.items()},
                "threshold": "F1-optimal over 1000 steps of the validation score range"}


def config_fingerprint(run: StudyRun) -> dict[str, object]:
    d = run.describe()
    return {k: d[k] for k in ("dataset", "data_root", "backbone", "weights", "seed", "image_size", *METHODS)}


