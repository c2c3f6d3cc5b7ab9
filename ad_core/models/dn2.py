"""DN2, the image-level k-nearest-neighbour baseline (docs/protocol.md §10), in the scikit-learn habit.

Bergman, Cohen & Hoshen, "Deep Nearest Neighbor Anomaly Detection" (arXiv:2002.10445, 2020):
embedding: global average pool of a pretrained backbone's feature map, one vector per image;
fit: keep the training images' vectors; score: mean L2 distance to the ``k`` = 2 nearest
training vectors.  No anomaly maps: it judges whole images only.

The paper pools the final ResNet stage; this suite's shared extractor stops at ``layer3``
(what PatchCore and PaDiM need), so DN2 pools ``layer3`` by default and one backbone pass
serves every method.  ``layers`` takes several stages (their pooled vectors concatenated).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ad_core.data.io import atomic_open
from ad_core.models.common import FeatureBatches, as_batches
from ad_core.models.kernels.knn import NearestNeighbours
from ad_core.timing import phase


class DN2:
    """DN2 anomaly detector.  ``fit`` -> ``score`` -> (image scores, None)."""

    def __init__(self, k: int = 2, layers: tuple[str, ...] = ("layer3",), device: str = "cpu",
                 knn_backend: str = "auto"):
        self.k = k
        self.layers = tuple(layers)
        self.device = device
        self.knn_backend = knn_backend  # ad_core.models.kernels.knn.BACKENDS (how to search, not a hyperparameter)

    def get_params(self) -> dict[str, object]:
        return {"k": self.k, "layers": list(self.layers)}

    def embed(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """(B, sum C) float32: each layer's map averaged over its grid, concatenated."""
        return torch.cat([batch[name].float().mean(dim=(2, 3)) for name in self.layers], dim=1).cpu().numpy()

    @phase("dn2 fit + score")
    def fit(self, features: FeatureBatches) -> DN2:
        """Keep the training images' pooled vectors (N_train, C)."""
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        parts = [self.embed(batch) for batch in as_batches(features)]
        if not parts or sum(len(p) for p in parts) < self.k:
            n = sum(len(p) for p in parts)
            raise ValueError(f"DN2.fit needs at least k={self.k} training images, got {n}.")
        self.train_embeddings_ = np.concatenate(parts)
        self._index = None
        return self

    def fit_summary(self) -> dict[str, int]:
        return {"n_train_images": int(self.train_embeddings_.shape[0])}

    @phase("dn2 fit + score")
    def score(self, features: FeatureBatches) -> tuple[np.ndarray, None]:
        """(image scores (N,) float64: mean distance to the k nearest training images, no maps)."""
        if not hasattr(self, "train_embeddings_"):
            raise RuntimeError("DN2 is not fitted: call fit() or load() first.")
        if getattr(self, "_index", None) is None:
            self._index = NearestNeighbours(self.train_embeddings_, self.device, self.knn_backend)
        scores = [self._index.search(self.embed(batch), self.k)[0].astype(np.float64).mean(axis=1)
                  for batch in as_batches(features)]
        return np.concatenate(scores), None

    def save(self, path: str | Path) -> None:
        """Training vectors and hyperparameters in one ``.npz`` (atomic)."""
        with atomic_open(path) as fh:
            np.savez(fh, train_embeddings=self.train_embeddings_, params=np.array(json.dumps(self.get_params())))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", knn_backend: str = "auto") -> DN2:
        with np.load(Path(path)) as state:
            params = json.loads(str(state["params"]))
            model = cls(k=params["k"], layers=tuple(params["layers"]), device=device, knn_backend=knn_backend)
            model.train_embeddings_ = state["train_embeddings"]
        model._index = None
        return model
