"""Every on-disk cache of a run and its file format: features, fitted models, scores.

All writes go through ``ad_core.data.io.atomic_open`` (temporary file + rename), so a
killed run leaves only complete entries and a restart continues where it stopped.

Features (``cache/features/<config digest>/``), content-keyed: SHA-256 of the image file's
bytes, under a folder keyed by the extractor
configuration (backbone, weights, layers, preprocessing).  Clean and shifted copies of an
image have different bytes, hence different entries; every scenario and every rerun
shares the same entries.

Models (``models/<name><suffix>`` + ``<name>.fit.json``) and scores
(``cache/scores/<model>/<domain>_<category>_<split>.npz`` + ``_maps.npy``) are named within one
``--out`` (whose configuration ``experiments.records.artifacts.guard_config`` pins) and keyed by content:
a fit record holds the SHA-256 of every training image (in order) and of the model's own files;
a score entry holds a stamp of the code, the model's files and the scored images' contents.  An
entry whose inputs changed is recomputed, with one line saying which inputs (``describe_inputs``).

Every entry also records the fingerprint of the code and libraries that produced it
(``experiments.execution.fingerprint``): the feature folder's key includes it, a model's fit record
and a score entry carry it; an entry made under another fingerprint is recomputed, and the
run says so in one line per cache.

Every entry carries the checksum of its own bytes, verified when read: a truncated, flipped or
altered entry is never used -- it is recomputed, with one line naming the file (``CorruptEntry``).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ad_core.data.dataset import ImageSet
from ad_core.data.io import atomic_open, atomic_torch_save, bytes_sha256, file_sha256, write_json
from ad_core.data.preprocess import Preprocessor
from ad_core.data.records import read_record
from ad_core.data.samples import Sample
from ad_core.errors import FileFormatError
from ad_core.features import FeatureExtractor
from ad_core.timing import phase
from experiments.definition.methods import AnomalyModel, MethodSpec
from experiments.execution.fingerprint import describe_change, digest, log

file_digest = file_sha256  # SHA-256 of an input file, memoised (ad_core.data.io)


bytes_digest = bytes_sha256  # SHA-256 of a cache entry's bytes, read now (the entry itself is what is checked)


def tensors_digest(item: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors' names, shapes, dtypes and bytes (a feature entry's checksum)."""
    h = hashlib.sha256()
    for name in sorted(item):
        t = item[name].contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype};".encode())
        h.update(t.numpy().data)
    return h.hexdigest()


class CorruptEntry(Exception):
    """A cache entry that cannot be read or fails its checksum (the message says which and why)."""


def sample_name(sample: Sample) -> str:
    """``<category>/<relpath>``: how messages name an input image."""
    depth = len(Path(sample.relpath).parts)
    return f"{sample.path.parents[depth - 1].name}/{sample.relpath}"


def content_key(sample: Sample) -> str:
    """What an image's features are made from: its file's SHA-256, and for a 16-bit container the bit depth
    it is read at too (a category's depth follows its images: ``ad_core.data.layouts.listing.with_bit_depth``)."""
    digest = file_digest(sample.path)
    if sample.bits is None:  # an 8-bit image: the key it always had
        return digest
    return hashlib.sha256(f"{digest}:{sample.bits}-bit".encode()).hexdigest()


def inputs_of(samples: Sequence[Sample]) -> list[list[str]]:
    """[[name, content key], ...] in order: what a model or a score entry was made from."""
    return [[sample_name(s), content_key(s)] for s in samples]


def describe_inputs(old: list | None, new: list) -> str:
    """Which inputs differ, in words: ``1 edited (coffee/train/good/003.png), 2 added (...)``."""
    if not isinstance(old, list):
        return "recorded without its inputs"
    before, after = dict(map(tuple, old)), dict(map(tuple, new))

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    parts = []
    for word, names in (("edited", sorted(n for n in after if n in before and before[n] != after[n])),
                        ("added", sorted(set(after) - set(before))),
                        ("removed", sorted(set(before) - set(after)))):
        if names:
            parts.append(f"{len(names)} {word} ({some(names)})")
    return ", ".join(parts) or "their order changed"


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
        self.n_corrupt = 0  # entries found damaged (named in the log up to 3 times, then counted)
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
            try:
                old = read_record(other, self.root.parent)
            except FileFormatError:
                continue  # a damaged record of another feature folder: nothing to say about this one
            if {k: v for k, v in old.items() if k != "fingerprint"} == mine:
                log.warning("features: recomputing (%s)",
                            describe_change(old.get("fingerprint"), self.config.get("fingerprint", {})))
                return

    def _path(self, sample: Sample) -> Path:
        h = content_key(sample)
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
                    atomic_torch_save(path, {"maps": item, "sha256": tensors_digest(item)})
                    self._remember(path, item)
            start += n
        self.n_computed += len(missing)

    def _remember(self, path: Path, item: dict[str, torch.Tensor]) -> None:
        size = sum(v.numel() * v.element_size() for v in item.values())
        if self._held + size <= self.memory_bytes:
            self._memory[path] = item
            self._held += size

    def load(self, sample: Sample) -> dict[str, torch.Tensor]:
        """One sample's maps (from memory when held; callers must not modify them in place).

        An entry that cannot be read or fails its checksum is recomputed, with one line naming it."""
        path = self._path(sample)
        item = self._memory.get(path)
        if item is None:
            try:
                item = self._read(path)
            except CorruptEntry as exc:
                self.n_corrupt += 1
                if self.n_corrupt <= 3:
                    log.warning("features: %s: recomputing", exc)
                elif self.n_corrupt == 4:
                    log.warning("features: more entries fail their checks under %s: recomputing each", self.root)
                path.unlink(missing_ok=True)
                self.ensure([sample])
                item = self._memory.get(path) or self._read(path)
            self._remember(path, item)
        return item

    @staticmethod
    def _read(path: Path) -> dict[str, torch.Tensor]:
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises RuntimeError, EOFError, pickle and zip errors for a bad file
            raise CorruptEntry(f"{path} cannot be read ({type(exc).__name__})") from None
        if not (isinstance(entry, dict) and set(entry) == {"maps", "sha256"}):
            raise CorruptEntry(f"{path} is not a checksummed feature entry (written by an older version?)")
        if tensors_digest(entry["maps"]) != entry["sha256"]:
            raise CorruptEntry(f"{path} fails its checksum (altered or truncated)")
        return entry["maps"]

    def batches(self, samples: Sequence[Sample], layers: Sequence[str] | None = None) -> CachedBatches:
        self.ensure(samples)
        return CachedBatches(self, list(samples), tuple(layers) if layers else None)


class CachedBatches:
    """Re-iterable batches ``{layer: (B, C, h, w)}`` read from the cache in sample order."""

    def __init__(self, store: FeatureStore, samples: list[Sample], layers: tuple[str, ...] | None):
        self.store, self.samples, self.layers = store, samples, layers

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def n_images(self) -> int:
        """Images over all batches (what ``PatchCore.fit`` sizes its projected patches by)."""
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

    The fit record keeps the fingerprint of the code and libraries that fit (and score) models,
    the training inputs (``inputs_of``, in order) and the SHA-256 of every file the model wrote
    (``files``); a model fit by other code, from other inputs, or whose files fail their checksums
    is not served, and the run says why in one line.
    """

    def __init__(self, root: Path, device: str, fingerprint: dict, knn_backend: str = "auto"):
        self.root, self.device, self.fingerprint, self.knn_backend = Path(root), device, fingerprint, knn_backend
        self._announced = False

    def _files(self, name: str, spec: MethodSpec) -> list[Path]:
        """The files a saved model consists of: its own, and a parameters JSON beside it where written."""
        own = self.root / f"{name}{spec.suffix}"
        sidecar = own.with_suffix(".json")
        return [own, sidecar] if spec.suffix != ".json" and sidecar.is_file() else [own]

    def load(self, name: str, spec: MethodSpec, inputs: list[list[str]]) -> tuple[AnomalyModel, dict] | None:
        """The saved model and its fit record, or None when missing, fit by other code, from other
        ``inputs``, or failing its checksums (each said in one line)."""
        path, meta_path = self.root / f"{name}{spec.suffix}", self.root / f"{name}.fit.json"
        if not (path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = read_record(meta_path, self.root)
        except FileFormatError as exc:
            log.warning("models: %s cannot be read (%s): refitting", meta_path, exc)
            return None
        if meta.get("fingerprint") != self.fingerprint:
            if not self._announced:
                self._announced = True
                log.warning("models and scores: refitting (%s)",
                            describe_change(meta.get("fingerprint"), self.fingerprint))
            return None
        if meta.get("inputs") != inputs:
            log.warning("models: %s: training images changed, %s: refitting", name,
                        describe_inputs(meta.get("inputs"), inputs))
            return None
        files = meta.get("files") if isinstance(meta.get("files"), dict) else {}
        for f in self._files(name, spec):
            if files.get(f.name) != bytes_digest(f):
                log.warning("models: %s fails its checksum (altered or truncated): refitting", f)
                return None
        try:
            return spec.load(path, self.device, self.knn_backend), meta
        except Exception as exc:  # a model file that passed its checksum but not its loader: not ours to serve
            log.warning("models: %s cannot be loaded (%s: %s): refitting", path, type(exc).__name__, exc)
            return None

    def save(self, name: str, spec: MethodSpec, model: AnomalyModel, meta: dict, inputs: list[list[str]]) -> dict:
        """Write the model, then its fit record (last: it marks the entry complete); return the record."""
        model.save(self.root / f"{name}{spec.suffix}")
        files = {f.name: bytes_digest(f) for f in self._files(name, spec)}
        record = {**meta, "fingerprint": self.fingerprint, "inputs": inputs, "files": files}
        write_json(self.root / f"{name}.fit.json", record)
        return record


def model_digest(meta: dict) -> str:
    """A fitted model's identity for the scores made with it: the checksums of its files."""
    return digest(meta.get("files", {}))


class ScoreCache:
    """Image scores (``.npz``) and, where kept, anomaly maps (``_maps.npy``, memory-mapped on load).

    A run holds the test maps of every (model, domain) pair; memory-mapping them keeps RSS
    from growing by 200 kB an image.  ``maps`` in the entry: "kept", "dropped" (validation
    and uncertain splits need image scores only) or "none" (the method makes no maps).  The
    entry's ``stamp`` covers the scoring code, the model (``model_digest``) and the scored images'
    contents; it also holds the maps file's SHA-256 and its images' names and digests (to say which
    changed).
    """

    def __init__(self, root: Path, fingerprint: dict):
        self.root = Path(root)
        self.code = digest(fingerprint)  # of the code that scores; an entry with another is not served

    def _paths(self, model: str, domain: str, category: str, split: str) -> tuple[Path, Path]:
        scores = self.root / model / f"{domain}_{category}_{split}.npz"
        return scores, scores.with_name(f"{scores.stem}_maps.npy")

    def _stamp(self, model_id: str, inputs: list[list[str]]) -> str:
        return digest({"code": self.code, "model": model_id, "inputs": inputs})

    @phase("score cache I/O")
    def load(self, model: str, domain: str, category: str, split: str, need_maps: bool, model_id: str,
             inputs: list[list[str]]) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(scores, maps or None), or None when the entry is missing, stale, corrupt (said in one line)
        or lacks the maps asked for."""
        scores_path, maps_path = self._paths(model, domain, category, split)
        if not scores_path.is_file():
            return None
        try:
            with zipfile.ZipFile(scores_path) as archive:  # an .npz: every member's CRC-32, read in full
                damaged = archive.testzip()
            if damaged is not None:
                log.warning("scores: %s fails its checksum (member %s): rescoring", scores_path, damaged)
                return None
            with np.load(scores_path) as entry:
                if "stamp" not in entry or str(entry["stamp"]) != self._stamp(model_id, inputs):
                    recorded = json.loads(str(entry["inputs"])) if "inputs" in entry else None
                    if recorded is not None and recorded != inputs and str(entry.get("model_id")) == model_id:
                        log.warning("scores: %s: images changed, %s: rescoring", scores_path,
                                    describe_inputs(recorded, inputs))
                    return None
                scores = entry["scores"]
                maps_state = str(entry["maps"])
                maps_sha = str(entry["maps_sha256"])
                if hashlib.sha256(scores.tobytes()).hexdigest() != str(entry["scores_sha256"]):
                    log.warning("scores: %s fails its checksum (altered): rescoring", scores_path)
                    return None
        except Exception as exc:  # zip, pickle and value errors of a damaged .npz
            log.warning("scores: %s cannot be read (%s): rescoring", scores_path, type(exc).__name__)
            return None
        if maps_state == "kept" and maps_path.is_file():
            if bytes_digest(maps_path) != maps_sha:
                log.warning("scores: %s fails its checksum (altered or truncated): rescoring", maps_path)
                return None
            return scores, np.load(maps_path, mmap_mode="r")
        if maps_state == "none" or not need_maps:
            return scores, None
        return None

    @phase("score cache I/O")
    def save(self, model: str, domain: str, category: str, split: str, scores: np.ndarray,
             maps: np.ndarray | None, keep_maps: bool, model_id: str, inputs: list[list[str]]) -> np.ndarray | None:
        """Write the entry; return the kept maps, memory-mapped (or None)."""
        scores_path, maps_path = self._paths(model, domain, category, split)
        state = "none" if maps is None else ("kept" if keep_maps else "dropped")
        maps_sha = ""
        if state == "kept":
            with atomic_open(maps_path) as fh:  # before the scores file, which marks the entry complete
                np.save(fh, maps)
            maps_sha = bytes_digest(maps_path)
        with atomic_open(scores_path) as fh:
            np.savez(fh, scores=scores, scores_sha256=np.array(hashlib.sha256(scores.tobytes()).hexdigest()),
                     maps=np.array(state), stamp=np.array(self._stamp(model_id, inputs)),
                     maps_sha256=np.array(maps_sha), model_id=np.array(model_id), inputs=np.array(json.dumps(inputs)))
        return np.load(maps_path, mmap_mode="r") if state == "kept" else None
