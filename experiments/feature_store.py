"""Content-keyed on-disk feature cache: each image goes through the backbone once.

Key: SHA-256 of the image file's bytes, under a folder keyed by the extractor
configuration (backbone, weights, layers, preprocessing).  Clean and shifted copies of an
image have different bytes, hence different entries; every scenario and every rerun
shares the same entries.  Entries are written atomically, so a killed run leaves only
complete files and a restart continues where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from ad_core.data.dataset import ImageSet
from ad_core.data.io import atomic_write_bytes, write_json
from ad_core.data.layout import Sample
from ad_core.features import FeatureExtractor


def file_digest(path: Path, _memo: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _memo[key]


class FeatureStore:
    """Feature maps of samples, from the cache or computed (and cached) on first use."""

    def __init__(self, cache_dir: Path, config: dict[str, object],
                 make_extractor: Callable[[], FeatureExtractor], batch_size: int = 16, progress: bool = True):
        self.config = config
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(cache_dir) / digest
        self._make_extractor = make_extractor
        self._extractor: FeatureExtractor | None = None
        self.batch_size = batch_size
        self.progress = progress
        self.n_computed = 0
        if not (self.root / "config.json").is_file():
            write_json(self.root / "config.json", config)

    def _path(self, sample: Sample) -> Path:
        h = file_digest(sample.path)
        return self.root / h[:2] / f"{h}.pt"

    def ensure(self, samples: Sequence[Sample], desc: str = "features") -> None:
        """Compute and cache the features of every sample not cached yet."""
        missing = [s for s in dict.fromkeys(samples) if not self._path(s).is_file()]
        if not missing:
            return
        if self._extractor is None:
            self._extractor = self._make_extractor()
        start = 0
        for batch in self._extractor.batches(ImageSet(missing), progress=self.progress, desc=desc):
            n = next(iter(batch.values())).shape[0]
            for j in range(n):
                buf = io.BytesIO()
                torch.save({k: v[j].clone() for k, v in batch.items()}, buf)
                atomic_write_bytes(self._path(missing[start + j]), buf.getvalue())
            start += n
        self.n_computed += len(missing)

    def load(self, sample: Sample) -> dict[str, torch.Tensor]:
        return torch.load(self._path(sample), map_location="cpu", weights_only=True)

    def batches(self, samples: Sequence[Sample], layers: Sequence[str] | None = None) -> "CachedBatches":
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
            items = [self.store.load(s) for s in self.samples[lo:lo + bs]]
            keys = self.layers or tuple(items[0])
            yield {k: torch.stack([it[k] for it in items]) for k in keys}
