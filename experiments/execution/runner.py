"""One runner for every scenario: it sequences fit, score, calibrate and evaluate.

Two steps: ``experiments.execution.prepare.prepare_run`` writes what a resolved run reads (built-in dataset
copy, splits, each derived domain's copy) and plans its work (``experiments.execution.plan``); ``StudyRun``
opens a prepared run cheaply (what each Dask task does), executes its units and memoises models, scores and thresholds,
shared by the scenarios of a run.  On-disk formats live in ``experiments.execution.cache``, the methods and
their capabilities in ``experiments.definition.methods``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ad_core.data.dataset import ImageSet
from ad_core.data.io import confine_writes
from ad_core.data.samples import Sample
from ad_core.features import FeatureExtractor
from ad_core.metrics.catalog import needs_validation_maps
from ad_core.metrics.registry import BenchmarkData
from ad_core.thresholds import calibrate
from ad_core.timing import phase
from experiments.definition.config import RunConfig
from experiments.definition.methods import AnomalyModel
from experiments.definition.scenarios import Scenario
from experiments.evaluation.benchmark_data import benchmark_data
from experiments.evaluation.evaluate import (
    cross_class_confusion,
    evaluate,
    evaluate_uncertain,
    feature_separation,
)
from experiments.evaluation.results import MethodResult, ScenarioResult, ScoreSet
from experiments.evaluation.statistics import class_intervals
from experiments.execution.cache import FeatureStore, ModelStore, ScoreCache, inputs_of, model_digest
from experiments.execution.fingerprint import fingerprint
from experiments.execution.plan import ModelKey, Unit, resolve
from experiments.execution.prepare import PreparedRun, prepare_run

EXTRACTED_LAYERS = ("layer1", "layer2", "layer3")  # one backbone pass serves every method


@dataclass
class FittedModel:
    key: ModelKey
    name: str  # models/<name><suffix>
    model: AnomalyModel
    meta: dict  # fit_seconds, n_train_images and the model's fit_summary()


class StudyRun:
    """A prepared run's feature store + memoised models/scores for one ``--out`` folder."""

    def __init__(self, prep: PreparedRun):
        self.prep = prep
        r = prep.resolved
        config = self.config = r.config
        self.out, self.root, self.dataset, self.backbone = r.out, r.root, r.dataset, r.backbone
        self.categories, self.prepared, self.has_masks = prep.categories, prep.prepared, prep.has_masks
        self.device, self.knn_backend, self.layout = r.device, r.knn_backend, prep.layout
        self.work = prep.work
        confine_writes(self.out, config.feature_cache)  # in a Dask worker too: no write through a link below them
        self.store = FeatureStore(
            Path(config.feature_cache) if config.feature_cache else self.out / "cache" / "features",
            {"backbone": self.backbone, "weights": r.weights, "layers": list(EXTRACTED_LAYERS),
             "image_size": config.image_size, **({"resize": config.resize} if config.resize else {}),
             "fingerprint": fingerprint("features"),
             # features depend on the seed only through random weights: seeds share pretrained features
             "seed": config.seed if r.weights == "random" else None},
            lambda: FeatureExtractor(self.backbone, EXTRACTED_LAYERS, config.weights,
                                     self.device, config.batch_size, config.seed),
            config.batch_size, config.progress, config.preprocessor(), int(config.feature_memory_gb * 2**30))
        code = fingerprint("models")
        self.model_store = ModelStore(self.out / "models", self.device, code, self.knn_backend)
        self.score_cache = ScoreCache(self.out / "cache" / "scores", code)
        self._models: dict[ModelKey, FittedModel] = {}
        self._scores: dict[tuple[str, str, str, str], ScoreSet] = {}
        self._pixel_ci: dict[int, dict] = {}  # pixel intervals do not depend on tau: once per test ScoreSet
        # (model name, category) -> the transform its float16 maps are written with (records/submission.py)
        self.map_transforms: dict[tuple[str, str], object] = {}

    @classmethod
    def of(cls, config: RunConfig) -> StudyRun:
        """A configuration resolved, prepared (its data written) and opened."""
        return cls(prepare_run(resolve(config)))

    # -- data -------------------------------------------------------------------------
    def samples(self, category: str, domain: str, split: str) -> list[Sample]:
        p = self.prepared[category]
        files = p.domains[domain]  # a planned domain
        if split == "uncertain":
            return files.uncertain
        names = {"train": p.splits.train, "val": p.splits.val(), "test": p.splits.test()}[split]
        return p.splits.samples(files, names)

    def image_file(self, category: str, domain: str, relpath: str) -> Path:
        return self.prepared[category].files(domain).by_relpath()[relpath].path

    # -- models -----------------------------------------------------------------------
    def model_name(self, key: ModelKey) -> str:
        return self.work.units[key].name

    def train_samples(self, key: ModelKey) -> list[Sample]:
        return [s for cat in key.trains_on(self.categories) for s in self.samples(cat, key.domain, "train")]

    def model(self, method: str, scope: str, domain: str, ratio: float | None = None) -> FittedModel:
        """The planned model of ``method`` on ``scope`` (a nested method's ratio: the run's when None)."""
        return self.fitted(self.work.key(method, scope, domain, ratio))

    def fitted(self, key: ModelKey) -> FittedModel:
        """The planned fit ``key`` (memoised, saved under models/, reloaded on a rerun) and its fit record.

        A member of a family of coreset prefixes comes with its family's largest: that fit (or its saved
        model) gives every member, each saved (or loaded) beside it."""
        if key in self._models:
            return self._models[key]
        unit = self.work.units[key]
        if unit.fitted_with is not None:
            self.fitted(unit.fitted_with)
            return self._models[key]
        train = self.train_samples(key)
        inputs = inputs_of(train)
        loaded = self.model_store.load(unit.name, unit.spec, inputs)
        if loaded is None:
            model = unit.spec.build(self.config, self.device, **unit.overrides)
            t0 = time.perf_counter()
            model.fit(self.store.batches(train))
            meta = {"fit_seconds": time.perf_counter() - t0, "n_train_images": len(train), **model.fit_summary()}
            loaded = model, self.model_store.save(unit.name, unit.spec, model, meta, inputs)
        self._models[key] = fitted = FittedModel(key, unit.name, *loaded)
        for smaller in unit.prefixes:
            member = self.work.units[smaller]
            found = self.model_store.load(member.name, member.spec, inputs)
            if found is not None:
                self._models[smaller] = FittedModel(smaller, member.name, *found)
            else:
                self._derive(fitted, member)
        return fitted

    def _derive(self, larger: FittedModel, unit: Unit) -> None:
        """Save (and memoise) the prefix model ``unit`` of a fitted larger coreset (``nested_coreset``)."""
        ratio = unit.key.ratio
        model = larger.model.with_ratio(ratio)
        meta = {"fit_seconds": larger.model.fit_seconds_at(ratio), "n_train_images": larger.meta["n_train_images"],
                **model.fit_summary(), "prefix_of": larger.name}
        record = self.model_store.save(unit.name, unit.spec, model, meta, larger.meta["inputs"])
        self._models[unit.key] = FittedModel(unit.key, unit.name, model, record)

    # -- scores -----------------------------------------------------------------------
    def scores(self, fitted: FittedModel, category: str, domain: str, split: str) -> ScoreSet:
        """Scores of one split (cached); test maps are kept (memory-mapped), other splits' dropped."""
        key = (fitted.name, category, domain, split)
        if key in self._scores:
            return self._scores[key]
        samples = self.samples(category, domain, split)
        files = self.prepared[category].domains[domain]
        # test maps, and the validation normals' where a measure of the benchmark sets its threshold on them
        keep_maps = split == "test" or (split == "val" and needs_validation_maps(files.capabilities.measures))
        inputs = inputs_of(samples)
        cached = self.score_cache.load(fitted.name, domain, category, split, keep_maps, model_digest(fitted.meta),
                                       inputs)
        if cached is None:
            scores, maps = self._compute_scores(fitted, category, domain, split, samples)
            maps = self.score_cache.save(fitted.name, domain, category, split, scores, maps, keep_maps,
                                         model_digest(fitted.meta), inputs)
        else:
            scores, maps = cached
        masks, benchmark = None, BenchmarkData()
        if split == "test":  # the benchmark's own measures, whether or not it has masks
            benchmark = benchmark_data(files, samples, self.config.preprocessor())
        if split == "test" and self.has_masks:
            with phase("masks"):
                masks = ImageSet(samples, self.config.preprocessor()).masks()
        result = ScoreSet([s.relpath for s in samples], np.array([s.label for s in samples]), scores, maps, masks,
                          benchmark)
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
        return [self._models[k] for k in self.work.units[fitted.key].family]  # fitted with ``fitted``

    # -- scenarios --------------------------------------------------------------------
    def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        methods = [self._run_method(scenario, method, ratio) for method, ratio in self.work.methods[scenario.name]]
        return ScenarioResult(scenario.name, scenario.description, self.describe(), methods)

    def _run_method(self, sc: Scenario, method: str, ratio: float | None) -> MethodResult:
        def fitted(cat: str) -> FittedModel:
            return self.fitted(self.work.uses[(sc.name, method, ratio, cat)])

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
            # a benchmark that reports each defect type apart gets them apart too
            metrics = result.per_class[c] = evaluate(test, taus[c], val[c],
                                                     self.prepared[c].clean.capabilities.by_defect_type)
            metrics.threshold_rule = f"{chosen[c][0].rule} ({chosen[c][1]})"
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
        for c, metrics in result.per_class.items():  # each class's intervals draw from their own seed
            if self.config.bootstrap and metrics.image_metrics_absent is None:
                metrics.ci95 = class_intervals(result.per_image[c], taus[c], self.config.seed, self._pixel_ci)
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
        return self.prep.resolved.describe(self.categories)
