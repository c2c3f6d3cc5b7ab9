"""One runner for every scenario: models, scores and thresholds computed once and shared."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ad_core import SEED
from ad_core.data.dataset import ImageSet
from ad_core.data.io import atomic_save_npy, atomic_write_bytes, write_json
from ad_core.data.layout import Sample
from ad_core.features import FeatureExtractor
from ad_core.features.backbones import describe_weights
from ad_core.features.extractor import resolve_device
from ad_core.metrics import macro_mean
from ad_core.models import PaDiM, PatchCore
from ad_core.thresholds import f1_optimal_threshold
from experiments.evaluate import ScoreSet, cross_class_confusion, evaluate, evaluate_uncertain, feature_separation
from experiments.feature_store import FeatureStore, file_digest
from experiments.prepare import BUILT_IN, PreparedCategory, default_categories, prepare_category, resolve_data_root
from experiments.scenarios import METHODS, Scenario

METRIC_KEYS = ("image_auroc", "image_auprc", "image_f1", "image_accuracy", "threshold", "pixel_auroc", "pro")


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
    image_size: int = 224
    progress: bool = True

    def resolved_backbone(self, dataset: str) -> str:
        if self.backbone:
            return self.backbone
        return "efficientnet_lite0" if dataset in BUILT_IN and self.data is None else "resnet50"


class StudyRun:
    """Prepared data + feature store + memoised models/scores for one ``--out`` folder."""

    def __init__(self, config: RunConfig):
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
            self.out / "cache" / "features",
            {"backbone": self.backbone, "weights": weights or "default", "layers": ["layer1", "layer2", "layer3"],
             "image_size": config.image_size, "seed": config.seed},
            lambda: FeatureExtractor(self.backbone, ("layer1", "layer2", "layer3"), config.weights,
                                     config.device, config.batch_size, config.seed),
            config.batch_size, config.progress)
        self._models: dict[str, tuple[object, dict]] = {}
        self._scores: dict[tuple[str, str, str, str], ScoreSet] = {}

    # -- data -------------------------------------------------------------------------
    def samples(self, category: str, domain: str, split: str) -> list[Sample]:
        p = self.prepared[category]
        files = p.clean if domain == "clean" else p.shifted
        if split == "uncertain":
            return files.uncertain
        names = {"train": p.splits.train, "val": p.splits.val(), "test": p.splits.test()}[split]
        return p.splits.samples(files, names)

    # -- models -----------------------------------------------------------------------
    def model_name(self, method: str, scope: str, domain: str, ratio: float | None) -> str:
        name = f"{method}_{scope}_{domain}"
        if ratio is not None and ratio != self.config.coreset_ratio:
            name += f"_coreset_{round(ratio * 100):02d}"
        return name

    def _new_model(self, method: str, ratio: float | None) -> PatchCore | PaDiM:
        c, device = self.config, self.store_device()
        if method == "patchcore":
            return PatchCore(coreset_ratio=ratio or c.coreset_ratio, projection_dim=c.projection_dim, k=c.k,
                             image_size=c.image_size, seed=c.seed, device=device, progress=c.progress)
        return PaDiM(n_features=c.padim_features, image_size=c.image_size, seed=c.seed, device=device)

    def store_device(self) -> str:
        return str(resolve_device(self.config.device))

    def model(self, method: str, scope: str, domain: str, ratio: float | None = None) -> tuple[str, object, dict]:
        """Fitted model (memoised, saved under models/, reloaded on a rerun) and its fit info."""
        name = self.model_name(method, scope, domain, ratio)
        if name in self._models:
            return name, *self._models[name]
        suffix = ".npy" if method == "patchcore" else ".pt"
        path, meta_path = self.out / "models" / f"{name}{suffix}", self.out / "models" / f"{name}.fit.json"
        cls = PatchCore if method == "patchcore" else PaDiM
        if path.is_file() and meta_path.is_file():
            model, meta = cls.load(path, device=self.store_device()), json.loads(meta_path.read_text())
        else:
            scopes = self.categories if scope == "unified" else [scope]
            train = [s for cat in scopes for s in self.samples(cat, domain, "train")]
            batches = self.store.batches(train, layers=None)
            model = self._new_model(method, ratio)
            t0 = time.perf_counter()
            model.fit(batches)
            meta = {"fit_seconds": time.perf_counter() - t0, "n_train_images": len(train)}
            if method == "patchcore":
                meta["memory_bank_size"] = int(model.memory_bank_.shape[0])
            model.save(path)
            write_json(meta_path, meta)
        self._models[name] = (model, meta)
        return name, model, meta

    # -- scores -----------------------------------------------------------------------
    def scores(self, model_name: str, model: object, category: str, domain: str, split: str) -> ScoreSet:
        key = (model_name, category, domain, split)
        if key in self._scores:
            return self._scores[key]
        samples = self.samples(category, domain, split)
        cache = self.out / "cache" / "scores" / model_name / f"{domain}_{category}_{split}.npz"
        # Test maps (N, 224, 224) float32 live in their own .npy, memory-mapped: a run holds
        # maps of every (model, domain) pair, which would otherwise grow RSS by 200 kB an image.
        maps_path = cache.with_name(f"{cache.stem}_maps.npy")
        if cache.is_file() and (split != "test" or maps_path.is_file()):
            scores = np.load(cache)["scores"]
        else:
            scores, maps = model.score(self.store.batches(samples))  # type: ignore[attr-defined]
            if split == "test":  # validation and uncertain cells only need image scores
                atomic_save_npy(maps_path, maps)  # before the scores file, which marks the entry complete
            del maps
            buf = io.BytesIO()
            np.savez(buf, scores=scores)
            atomic_write_bytes(cache, buf.getvalue())
        maps = np.load(maps_path, mmap_mode="r") if split == "test" else None
        masks = ImageSet(samples).masks() if (split == "test" and self.has_masks) else None
        result = ScoreSet([s.relpath for s in samples], np.array([s.label for s in samples]), scores, maps, masks)
        self._scores[key] = result
        return result

    # -- scenarios --------------------------------------------------------------------
    def run_scenario(self, scenario: Scenario) -> dict[str, object]:
        methods: dict[str, object] = {}
        thresholds: dict[str, dict[str, float]] = {}
        per_image: dict[str, dict[str, ScoreSet]] = {}
        for method in [m for m in scenario.methods if m in self.config.methods]:
            for ratio in scenario.coreset_ratios or (None,):
                key = method if ratio is None else f"{method}@rho={ratio:g}"
                methods[key], thresholds[key], per_image[key] = self._run_method(scenario, method, ratio)
        return {"scenario": scenario.name, "description": scenario.description,
                "config": self.describe(), "methods": methods,
                "_thresholds": thresholds, "_per_image": per_image}

    def _run_method(self, sc: Scenario, method: str, ratio: float | None):
        def fitted(cat: str):
            return self.model(method, "unified" if sc.unified else cat, sc.fit_domain, ratio)

        val = {}
        for c in self.categories:
            name, model, _ = fitted(c)
            val[c] = self.scores(name, model, c, sc.calib_domain, "val")
        if sc.global_threshold:
            pooled = ScoreSet.concat(list(val.values()))
            tau_global = f1_optimal_threshold(pooled.scores, pooled.labels).value
            taus = {c: tau_global for c in self.categories}
        else:
            taus = {c: f1_optimal_threshold(v.scores, v.labels).value for c, v in val.items()}
        per_class, tests = {}, {}
        for c in self.categories:
            name, model, meta = fitted(c)
            tests[c] = self.scores(name, model, c, sc.eval_domain, "test")
            per_class[c] = evaluate(tests[c], taus[c])
            if self.samples(c, sc.eval_domain, "uncertain"):
                uncertain = self.scores(name, model, c, sc.eval_domain, "uncertain")
                per_class[c]["uncertain"] = evaluate_uncertain(uncertain, tests[c], taus[c])
            if sc.coreset_ratios is not None:
                per_class[c].update(memory_bank_size=meta.get("memory_bank_size"), fit_seconds=meta["fit_seconds"])
        result: dict[str, object] = {
            "per_class": per_class,
            "mean": macro_mean({c: {k: m[k] for k in METRIC_KEYS if k in m} for c, m in per_class.items()}),
        }
        if sc.global_threshold:
            result["pooled"] = evaluate(ScoreSet.concat(list(tests.values())), tau_global)
        if sc.shortcut_analysis:
            result["shortcut"] = self._shortcut(tests, taus)
        return result, taus, tests

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
                "weights_source": describe_weights(self.backbone, c.weights, c.seed), "seed": c.seed, "image_size": c.image_size,
                "patchcore": {"coreset_ratio": c.coreset_ratio, "k": c.k, "projection_dim": c.projection_dim,
                              "layers": ["layer2", "layer3"], "reweighting": "study"},
                "padim": {"n_features": c.padim_features, "eps": 0.01, "layers": ["layer1", "layer2", "layer3"]},
                "threshold": "F1-optimal over 1000 steps of the validation score range"}


def config_fingerprint(run: StudyRun) -> dict[str, object]:
    d = run.describe()
    return {k: d[k] for k in ("dataset", "data_root", "backbone", "weights", "seed", "image_size", "patchcore", "padim")}


