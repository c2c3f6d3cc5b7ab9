"""Every on-disk cache of a run and its file format: features, fitted models, scores.

All writes go through ``ad_core.data.io.atomic_open`` (temporary file + rename), so a
killed run leaves only complete entries and a restart continues where it stopped.

Features (``cache/features/<config digest>/``), content-keyed: SHA-256 of the image file's
bytes, under a folder keyed by the extractor
configuration (backbone, weights, layers, preprocessing).  Clean and shifted copies of an
image have different bytes, hence different entries; every scenario and every rerun
shares the same entries.

Models (``models/<name><suffix>`` + ``<name>.fit.json``) and scores
(``cache/scores/<model>/<domain>_<category>_<split>.npz`` + ``_maps.npy``) are keyed by name
within one ``--out``, whose configuration ``experiments.artifacts.guard_config`` pins.

Every entry also records the fingerprint of the code and libraries that produced it
(``experiments.fingerprint``): the feature folder's key includes it, a model's fit record
and a score entry carry it; an entry made under another fingerprint is recomputed, and the
run says so in one line per cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ad_core.data.dataset import ImageSet
from ad_core.data.io import atomic_open, write_json
from ad_core.data.layout import Sample
from ad_core.data.preprocess import Preprocessor
from ad_core.features import FeatureExtractor
from ad_core.timing import phase
from experiments.fingerprint import describe_change, digest, log
from experiments.methods import AnomalyModel, MethodSpec


def file_digest(path: Path, _memo: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _memo[key]


class FeatureStore:
    """Feature maps of samples, from the cache or computed (and cached) on first use.

    Entries read or computed are also kept in memory, up to ``memory_bytes`` (first come, kept:
    a study re-reads the same splits in the same order, where an LRU policy would evict each
    entry just before its next use), so the scenarios' repeated passes do not decode the files
    again (ELPV's full study reads about 40,000 entries of 5,248 images).
    """

    def __init__(self, cache_dir: Path, config: dict[str, object],
                 make_extractor: Callable[[], FeatureExtractor], batch_size: int = 16, progress: bool = True,
                 preprocess: Preprocessor | None = None, memory_bytes: int = 0):
        self.config = config
        self.preprocess = preprocess or Preprocessor()
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(cache_dir) / digest
        self._make_extractor = make_extractor
        self._extractor: FeatureExtractor | None = None
        self.batch_size = batch_size
        self.progress = progress
        self.n_computed = 0
        self.memory_bytes = memory_bytes
        self._memory: dict[Path, dict[str, torch.Tensor]] = {}
        self._held = 0
        if not (self.root / "config.json").is_file():
            self._note_stale_siblings()
            write_json(self.root / "config.json", config)

    def _note_stale_siblings(self) -> None:
        """One line when features of this configuration exist under another code fingerprint."""
        mine = {k: v for k, v in self.config.items() if k != "fingerprint"}
        for other in sorted(self.root.parent.glob("*/config.json")):
            old = json.loads(other.read_text())
            if {k: v for k, v in old.items() if k != "fingerprint"} == mine:
                log.warning("features: recomputing (%s)",
                            describe_change(old.get("fingerprint"), self.config.get("fingerprint", {})))
                return

    def _path(self, sample: Sample) -> Path:
        h = file_digest(sample.path)
        return self.root / h[:2] / f"{h}.pt"

    def ensure(self, samples: Sequence[Sample]) -> None:
        """Compute and cache the features of every sample not cached yet."""
        missing = [s for s in dict.fromkeys(samples) if not self._path(s).is_file()]
        if not missing:
            return
        if self._extractor is None:
            self._extractor = self._make_extractor()
        start = 0
        for batch in self._extractor.batches(ImageSet(missing, self.preprocess), progress=self.progress):
            n = next(iter(batch.values())).shape[0]
            with phase("feature cache write"):
                for j in range(n):
                    item = {k: v[j].clone() for k, v in batch.items()}
                    path = self._path(missing[start + j])
                    with atomic_open(path) as fh:
                        torch.save(item, fh)
                    self._remember(path, item)
            start += n
        self.n_computed += len(missing)

    def _remember(self, path: Path, item: dict[str, torch.Tensor]) -> None:
        size = sum(v.numel() * v.element_size() for v in item.values())
        if self._held + size <= self.memory_bytes:
            self._memory[path] = item
            self._held += size

    def load(self, sample: Sample) -> dict[str, torch.Tensor]:
        """One sample's maps (from memory when held; callers must not modify them in place)."""
        path = self._path(sample)
        item = self._memory.get(path)
        if item is None:
            item = torch.load(path, map_location="cpu", weights_only=True)
            self._remember(path, item)
        return item

    def batches(self, samples: Sequence[Sample], layers: Sequence[str] | None = None) -> CachedBatches:
        self.ensure(samples)
        return CachedBatches(self, list(samples), tuple(layers) if layers else None)


class CachedBatches:
    """Re-iterable batches ``{layer: (B, C, h, w)}`` read from the cache in sample order."""

    def __init__(self, store: FeatureStore, samples: list[Sample], layers: tuple[str, ...] | None):
        self.store, self.samples, self.layers = store, samples, layers

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        bs = self.store.batch_size
        for lo in range(0, len(self.samples), bs):
            with phase("feature cache read"):
                items = [self.store.load(s) for s in self.samples[lo:lo + bs]]
                keys = self.layers or tuple(items[0])
                batch = {k: torch.stack([it[k] for it in items]) for k in keys}
            yield batch


class ModelStore:
    """Fitted models of a run: ``<name><suffix>`` (the method's own format) + ``<name>.fit.json``.

    ``fingerprint``: of the code and libraries that fit (and score) models; the fit record
    keeps it, and a model fit under another one is not served.
    """

    def __init__(self, root: Path, device: str, fingerprint: dict, knn_backend: str = "auto"):
        self.root, self.device, self.fingerprint, self.knn_backend = Path(root), device, fingerprint, knn_backend
        self._announced = False

    def load(self, name: str, spec: MethodSpec) -> tuple[AnomalyModel, dict] | None:
        """The saved model and its fit record, or None when missing or fit by other code."""
        path, meta_path = self.root / f"{name}{spec.suffix}", self.root / f"{name}.fit.json"
        if not (path.is_file() and meta_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != self.fingerprint:
            if not self._announced:
                self._announced = True
                log.warning("models and scores: refitting (%s)",
                            describe_change(meta.get("fingerprint"), self.fingerprint))
            return None
        return spec.load(path, self.device, self.knn_backend), meta

    def save(self, name: str, spec: MethodSpec, model: AnomalyModel, meta: dict) -> None:
        model.save(self.root / f"{name}{spec.suffix}")
        write_json(self.root / f"{name}.fit.json", {**meta, "fingerprint": self.fingerprint})  # last: marks complete


class ScoreCache:
    """Image scores (``.npz``) and, where kept, anomaly maps (``_maps.npy``, memory-mapped on load).

    A run holds the test maps of every (model, domain) pair; memory-mapping them keeps RSS
    from growing by 200 kB an image.  ``maps`` in the entry: "kept", "dropped" (validation
    and uncertain splits need image scores only) or "none" (the method makes no maps).
    """

    def __init__(self, root: Path, fingerprint: dict):
        self.root = Path(root)
        self.stamp = digest(fingerprint)  # of the code that scores; an entry with another is not served

    def _paths(self, model: str, domain: str, category: str, split: str) -> tuple[Path, Path]:
        scores = self.root / model / f"{domain}_{category}_{split}.npz"
        return scores, scores.with_name(f"{scores.stem}_maps.npy")

    @phase("score cache I/O")
    def load(self, model: str, domain: str, category: str, split: str, need_maps: bool
             ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(scores, maps or None), or None when the entry is missing or lacks the maps asked for."""
        scores_path, maps_path = self._paths(model, domain, category, split)
        if not scores_path.is_file():
            return None
        with np.load(scores_path) as entry:
            if "stamp" not in entry or str(entry["stamp"]) != self.stamp:
                return None
            scores = entry["scores"]
            maps_state = str(entry["maps"])
        if maps_state == "kept" and maps_path.is_file():
            return scores, np.load(maps_path, mmap_mode="r")
        if maps_state == "none" or not need_maps:
            return scores, None
        return None

    @phase("score cache I/O")
    def save(self, model: str, domain: str, category: str, split: str, scores: np.ndarray,
             maps: np.ndarray | None, keep_maps: bool) -> np.ndarray | None:
        """Write the entry; return the kept maps, memory-mapped (or None)."""
        scores_path, maps_path = self._paths(model, domain, category, split)
        state = "none" if maps is None else ("kept" if keep_maps else "dropped")
        if state == "kept":
            with atomic_open(maps_path) as fh:  # before the scores file, which marks the entry complete
                np.save(fh, maps)
        with atomic_open(scores_path) as fh:
            np.savez(fh, scores=scores, maps=np.array(state), stamp=np.array(self.stamp))
        return np.load(maps_path, mmap_mode="r") if state == "kept" else None
