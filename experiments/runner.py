"""One runner for every scenario: it sequences fit, score, calibrate and evaluate.

Models, scores and thresholds are computed once and shared by the scenarios of a run;
their on-disk formats live in ``experiments.cache``, the methods in ``experiments.methods``.
"""

from __future__ import annotations

import dataclasses
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
from ad_core.timing import phase
from experiments.cache import FeatureStore, ModelStore, ScoreCache, file_digest
from experiments.evaluate import cross_class_confusion, evaluate, evaluate_uncertain, feature_separation
from experiments.fingerprint import fingerprint
from experiments.methods import METHODS, AnomalyModel, get_method
from experiments.prepare import BUILT_IN, PreparedCategory, default_categories, prepare_category, resolve_data_root
from experiments.presets import OFFLINE_BACKBONE, get_preset
from experiments.results import MethodResult, ScenarioResult, ScoreSet
from experiments.scenarios import Scenario, select
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
    preset: str = "study"  # the protocol (experiments.presets); its settings fill the fields below
    backbone: str | None = None  # None: the preset's (study: resnet50), efficientnet_lite0 on built-in data
    weights: str | None = None
    device: str = "auto"
    seed: int = SEED
    batch_size: int = 16
    coreset_ratio: float = 0.05
    k: int = 9
    projection_dim: int = 128
    padim_features: int | None = 100  # None: the preset's number for the backbone (papers: 550 on WideResNet-50)
    patchcore_reweighting: str = "study"  # "paper": the original max-patch reweighting
    patchcore_blur: float | None = None  # sigma of the map blur (the papers: 4)
    patchcore_embedding: str = "study"  # "original": the PatchCore authors' 1024-d aggregation
    image_size: int = 224  # preprocessing, masks, maps and metrics all work at this size
    resize: int | None = None  # None: resize straight to image_size; int: shorter side, then centre crop
    split: str = "study"  # "full_test": the papers' protocol (train/good to train, the whole test set)
    progress: bool = True
    bootstrap: bool = True  # 95% intervals per class (1,000 stratified resamples)
    feature_cache: Path | None = None  # default <out>/cache/features; seeds of one study share one
    # how the independent units run (not number-affecting): "local" in this process, or "dask"
    # (experiments.executors: features, fits and scores as tasks of a Dask cluster, then the same runner)
    executor: str = "local"
    scheduler: str | None = None  # a Dask scheduler address; None starts a LocalCluster
    workers: int = 2  # LocalCluster size
    threads: int | None = None  # torch/numba/faiss threads per process; None: all cores (a LocalCluster's shared out)
    feature_memory_gb: float = 4.0  # feature maps kept in memory between the scenarios' passes (not number-affecting)

    def resolved_backbone(self, dataset: str) -> str:
        if self.backbone:
            return self.backbone
        return OFFLINE_BACKBONE if dataset in BUILT_IN and self.data is None else get_preset(self.preset).backbone

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(size=self.image_size, resize=self.resize)


ModelKey = tuple[str, str, str, "float | None"]  # (method, scope: a category or "unified", fit domain, ratio)
ScoreKey = tuple[ModelKey, str, str, str]  # (model, category, domain, split)


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
        preset = get_preset(config.preset)
        self.out = Path(config.out)
        self.root, self.dataset = resolve_data_root(config.data, self.out, config.dataset, config.seed)
        self.backbone = config.resolved_backbone(self.dataset)
        if config.padim_features is None:
            config = dataclasses.replace(config, padim_features=preset.padim_features(self.backbone))
        self.config = config
        self.categories = config.categories or default_categories(self.root, self.dataset, built_in=config.data is None)
        shifted = any(d == "shift" for sc in select(config.scenarios)
                      for d in (sc.fit_domain, sc.calib_domain, sc.eval_domain))
        self.prepared: dict[str, PreparedCategory] = {
            c: prepare_category(self.root, c, self.out, config.seed, config.progress, config.split, shifted)
            for c in self.categories}
        self.has_masks = all(p.clean.has_masks for p in self.prepared.values())
        weights = config.weights
        if weights and Path(weights).is_file():
            weights = f"file-sha256:{file_digest(Path(weights))}"
        self.store = FeatureStore(
            Path(config.feature_cache) if config.feature_cache else self.out / "cache" / "features",
            {"backbone": self.backbone, "weights": weights or "default", "layers": list(EXTRACTED_LAYERS),
             "image_size": config.image_size, **({"resize": config.resize} if config.resize else {}),
             "fingerprint": fingerprint("features"),
             # features depend on the seed only through random weights: seeds share pretrained features
             "seed": config.seed if weights == "random" else None},
            lambda: FeatureExtractor(self.backbone, EXTRACTED_LAYERS, config.weights,
                                     config.device, config.batch_size, config.seed),
            config.batch_size, config.progress, config.preprocessor(), int(config.feature_memory_gb * 2**30))
        self.device = str(resolve_device(config.device))
        code = fingerprint("models")
        self.model_store = ModelStore(self.out / "models", self.device, code)
        self.score_cache = ScoreCache(self.out / "cache" / "scores", code)
        self._models: dict[str, FittedModel] = {}
        self._scores: dict[tuple[str, str, str, str], ScoreSet] = {}
        self._keys: dict[str, ModelKey] = {}  # model name -> the key it was asked for by
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
        """The model a scenario uses for one class: per class or unified, fit on its fit domain."""
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

    def effective_ratio(self, ratio: float | None) -> float:
        return self.config.coreset_ratio if ratio is None else ratio

    def prefix_siblings(self, method: str, scope: str, domain: str) -> list[float | None]:
        """The planned coreset ratios of one PatchCore training set, largest first: the smaller models are
        prefixes of the largest one's greedy run (``PatchCore.with_ratio``), so only that one is fitted."""
        if not hasattr(get_method(method).model_class(), "with_ratio"):
            return []
        ratios = {self.effective_ratio(r): r for m, s, d, r in self.planned_models
                  if (m, s, d) == (method, scope, domain)}
        return [ratios[r] for r in sorted(ratios, reverse=True)]

    def train_samples(self, key: ModelKey) -> list[Sample]:
        method, scope, domain, _ = key
        scopes = self.categories if scope == "unified" else [scope]
        return [s for cat in scopes for s in self.samples(cat, domain, "train")]

    def model(self, method: str, scope: str, domain: str, ratio: float | None = None) -> FittedModel:
        """The fitted model (memoised, saved under models/, reloaded on a rerun) and its fit record."""
        name = self.model_name(method, scope, domain, ratio)
        self._keys.setdefault(name, (method, scope, domain, ratio))
        if name in self._models:
            return self._models[name]
        spec = get_method(method)
        loaded = self.model_store.load(name, spec)
        siblings = self.prefix_siblings(method, scope, domain)
        if loaded is None and siblings and self.effective_ratio(siblings[0]) > self.effective_ratio(ratio):
            largest = self.model(method, scope, domain, siblings[0])  # fits it, and saves its prefixes
            if name not in self._models:  # its prefix was not saved with it (e.g. a run killed in between)
                self._derive(largest, name, spec, self.effective_ratio(ratio))
            return self._models[name]
        if loaded is None:
            train = self.train_samples((method, scope, domain, ratio))
            model = spec.build(self.config, self.device, **({} if ratio is None else {"coreset_ratio": ratio}))
            t0 = time.perf_counter()
            model.fit(self.store.batches(train))
            meta = {"fit_seconds": time.perf_counter() - t0, "n_train_images": len(train), **model.fit_summary()}
            self.model_store.save(name, spec, model, meta)
            loaded = model, meta
        self._models[name] = fitted = FittedModel(name, *loaded)
        largest = siblings and self.effective_ratio(siblings[0]) == self.effective_ratio(ratio)
        for smaller in siblings[1:] if largest else []:
            sibling = self.model_name(method, scope, domain, smaller)
            if sibling in self._models:
                continue
            found = self.model_store.load(sibling, spec)
            if found is not None:
                self._models[sibling] = FittedModel(sibling, *found)
            else:
                self._derive(fitted, sibling, spec, self.effective_ratio(smaller))
        return fitted

    def _derive(self, larger: FittedModel, name: str, spec, ratio: float) -> None:
        """Save (and memoise) the prefix model at ``ratio`` of a fitted larger coreset."""
        model = larger.model.with_ratio(ratio)
        seconds = larger.model.fit_seconds_at(ratio) if hasattr(larger.model, "fit_seconds_at") else None
        meta = {"fit_seconds": seconds, "n_train_images": larger.meta["n_train_images"], **model.fit_summary(),
                "prefix_of": larger.name}
        self.model_store.save(name, spec, model, meta)
        self._models[name] = FittedModel(name, model, meta)

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
            scores, maps = self._compute_scores(fitted, category, domain, split, samples)
            maps = self.score_cache.save(fitted.name, domain, category, split, scores, maps, keep_maps)
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
        others = [f for f in family if f.name != fitted.name and (f.name, category, domain, split) not in self._scores
                  and self.score_cache.load(f.name, domain, category, split, need_maps=keep_maps) is None]
        if not others:
            return fitted.model.score(self.store.batches(samples))
        group = [fitted, *others]
        results = family[0].model.score_nested(self.store.batches(samples), [f.model.coreset_ratio for f in group])
        for member, (scores, maps) in zip(others, results[1:]):
            self.score_cache.save(member.name, domain, category, split, scores, maps, keep_maps)
        return results[0]

    def _prefix_family(self, fitted: FittedModel) -> list[FittedModel]:
        """The planned models whose banks are prefixes of one greedy run with ``fitted``'s, largest first
        (empty when there is no such family or the method cannot score prefixes in one pass)."""
        key = self._keys.get(fitted.name)
        if key is None or not hasattr(fitted.model, "score_nested"):
            return []
        method, scope, domain, _ = key
        siblings = self.prefix_siblings(method, scope, domain)
        return [self.model(method, scope, domain, r) for r in siblings] if len(siblings) > 1 else []

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
        c = self.config
        threshold = ("F1-optimal over 1000 steps of the validation score range" if c.split == "study" else
                     "F1-optimal over 1000 steps of the TEST score range (full-test protocol: no validation split, "
                     "as anomalib's default; F1 and accuracy are optimistic, the tau-free metrics are the papers')")
        return {"preset": c.preset, "dataset": self.dataset, "data_root": str(self.root),
                "categories": self.categories, "backbone": self.backbone, "weights": self.store.config["weights"],
                "weights_source": describe_weights(self.backbone, c.weights, c.seed), "seed": c.seed,
                "image_size": c.image_size, "resize": c.resize, "split": c.split,
                **{name: spec.describe(c) for name, spec in METHODS.items()},
                "threshold": threshold}


def config_fingerprint(run: StudyRun) -> dict[str, object]:
    d = run.describe()
    keys = ("preset", "dataset", "data_root", "backbone", "weights", "seed", "image_size", "resize", "split", *METHODS)
    return {k: d[k] for k in keys}


