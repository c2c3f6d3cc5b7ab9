"""PatchCore as the study defines it (docs/protocol.md §5), in the scikit-learn habit.

embedding ("study", default): 3x3 average pooling (stride 1, padding 1) on layer2 and layer3,
layer3 bilinearly upsampled to layer2's grid, concatenated -> one vector per patch (1536-d on
ResNet-50); "original": the PatchCore authors' code (``original_embedding``), 1024-d.
fit: JL projection to 128 dims (seeded), greedy coreset of ``coreset_ratio`` of all
training patches (seeded start), memory bank = the selected full vectors.
score: L2 distances to the k nearest bank entries (``knn``: exact on a CPU); reweighting:
- "study" (default): per patch, s = d1 * (1 - softmax(-d)_1) over its k neighbours;
- "paper": the original PatchCore: only the image's max patch is reweighted, with the
  bank neighbours of its nearest bank entry, w = 1 - softmax(+d)_1 (anomalib's code);
  the map keeps the raw d1;
- "none": s = d1.
Image score = max patch score; map = patch scores bilinearly upsampled to 224x224
(optional Gaussian blur, sigma 4 in the original).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ad_core import SEED
from ad_core.data.io import atomic_open, write_json
from ad_core.data.records import read_record
from ad_core.models.common import FeatureBatches, as_batches, coreset_size, upsample_maps
from ad_core.models.kernels.coreset import greedy_coreset, jl_matrix, start_index
from ad_core.models.kernels.knn import NestedNeighbours
from ad_core.timing import phase

REWEIGHTING = ("study", "paper", "none")
EMBEDDINGS = ("study", "original")
ORIGINAL_DIM = 1024  # the authors' pretrain_embed_dimension = target_embed_dimension for WideResNet-50


def patch_embedding(features: dict[str, torch.Tensor], layers: tuple[str, ...]) -> torch.Tensor:
    """Feature maps -> (B, D, h, w) on the first layer's grid (pooled, upsampled, concatenated)."""
    pooled = [F.avg_pool2d(features[name], 3, stride=1, padding=1) for name in layers]
    size = pooled[0].shape[-2:]
    parts = [pooled[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pooled[1:]]
    return torch.cat(parts, dim=1)


def original_embedding(features: dict[str, torch.Tensor], layers: tuple[str, ...],
                       dim: int = ORIGINAL_DIM) -> torch.Tensor:
    """Feature maps -> (B, dim, h, w) as the PatchCore authors' code aggregates them.

    Per layer: each patch's 3x3 neighbourhood (zero-padded) flattened channel-major to C*9
    values, deeper layers' neighbourhoods bilinearly resized to the first layer's grid, then
    adaptive-average-pooled (1-d, over those C*9 values) to ``dim``; the layers' vectors are
    concatenated and adaptive-average-pooled to ``dim`` again (amazon-science/patchcore-inspection,
    ``PatchMaker``, ``MeanMapper``, ``Aggregator``).  Written here in torch's terms
    (``unfold``, ``adaptive_avg_pool1d``); ``tests/test_patchcore.py`` checks it against the
    definition computed position by position.
    """
    size = features[layers[0]].shape[-2:]
    per_layer = []
    for name in layers:
        x = features[name]
        b, c, h, w = x.shape
        patches = F.unfold(x, kernel_size=3, padding=1).reshape(b, c * 9, h, w)  # (c, ky, kx) per patch
        if (h, w) != tuple(size):
            patches = F.interpolate(patches, size=size, mode="bilinear", align_corners=False)
        flat = patches.permute(0, 2, 3, 1).reshape(-1, 1, c * 9)
        per_layer.append(F.adaptive_avg_pool1d(flat, dim))
    merged = F.adaptive_avg_pool1d(torch.cat(per_layer, dim=2), dim)  # (B*h*w, 1, dim)
    return merged.reshape(b, *size, dim).permute(0, 3, 1, 2)


def reweight_study(d: np.ndarray) -> np.ndarray:
    """Per-patch scores from (P, k) ascending neighbour distances: d1 * (1 - softmax(-d)_1).

    The softmax is computed shifted by the row minimum, so large distances never make
    exp underflow to 0/0.
    """
    shifted = -(d - d[:, :1])  # <= 0, first column exactly 0
    softmax_first = 1.0 / np.exp(shifted).sum(axis=1)
    return d[:, 0] * (1.0 - softmax_first)


class PatchCore:
    """PatchCore anomaly detector.  ``fit`` -> ``score`` -> (image scores, maps)."""

    def __init__(
        self,
        coreset_ratio: float = 0.05,
        projection_dim: int = 128,
        k: int = 9,
        layers: tuple[str, ...] = ("layer2", "layer3"),
        reweighting: str = "study",
        blur_sigma: float | None = None,
        embedding: str = "study",
        image_size: int = 224,
        seed: int = SEED,
        device: str = "cpu",
        progress: bool = False,
        knn_backend: str = "auto",
    ):
        self.coreset_ratio = coreset_ratio
        self.projection_dim = projection_dim
        self.k = k
        self.layers = tuple(layers)
        self.reweighting = reweighting
        self.blur_sigma = blur_sigma
        self.embedding = embedding
        self.image_size = image_size
        self.seed = seed
        self.device = device
        self.progress = progress
        self.knn_backend = knn_backend  # ad_core.models.kernels.knn.BACKENDS (how to search, not a hyperparameter)

    def get_params(self) -> dict[str, object]:
        return {
            "coreset_ratio": self.coreset_ratio, "projection_dim": self.projection_dim, "k": self.k,
            "layers": list(self.layers), "reweighting": self.reweighting, "blur_sigma": self.blur_sigma,
            "embedding": self.embedding, "image_size": self.image_size, "seed": self.seed,
        }

    def _check(self) -> None:
        if not 0 < self.coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if self.reweighting not in REWEIGHTING:
            raise ValueError(f"reweighting must be one of {REWEIGHTING}, got {self.reweighting!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.k == 1 and self.reweighting == "study":
            raise ValueError("reweighting='study' with k=1 makes every weight 1 - softmax of one value = 0, "
                             "so every score 0; use k >= 2 (the study: 9) or reweighting='none'.")

    def embed_patches(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """A feature batch's (B * h * w, d) patch embeddings, with (B, h, w)."""
        embed = original_embedding if self.embedding == "original" else patch_embedding
        emb = embed({k: v.to(self.device).float() for k, v in batch.items()}, self.layers)
        b, d, h, w = emb.shape
        return emb.permute(0, 2, 3, 1).reshape(-1, d), (b, h, w)

    @phase("patchcore fit: embed, project, gather")
    def fit(self, features: FeatureBatches) -> PatchCore:
        """Build the memory bank from training feature batches (iterated twice)."""
        self._check()
        t_start = time.perf_counter()
        batches = as_batches(features, reiterable=True)
        projection: torch.Tensor | None = None
        projected: list[torch.Tensor] = []
        # a source that knows its image count (the feature cache's batches) gets the (N, 128) result
        # written in place: no second copy of it from concatenating (1.2 GB at 15 MVTec AD categories)
        n_images = getattr(batches, "n_images", None)
        proj, filled = None, 0
        for batch in batches:  # pass 1: keep only the 128-d projection
            patches, (_, h, w) = self.embed_patches(batch)
            if projection is None:
                projection = jl_matrix(patches.shape[1], self.projection_dim, self.seed).to(patches.device)
                if n_images is not None:
                    proj = torch.empty(n_images * h * w, self.projection_dim, device=patches.device)
            if proj is None:
                projected.append(patches @ projection)
            elif filled + patches.shape[0] <= proj.shape[0]:
                torch.matmul(patches, projection, out=proj[filled:filled + patches.shape[0]])
            filled += patches.shape[0]
        if projection is None:
            raise ValueError("PatchCore.fit got no feature batches.")
        if proj is None:
            proj = torch.cat(projected)
        elif filled != proj.shape[0]:
            raise RuntimeError(f"the feature batches held {filled} patches, not the {proj.shape[0]} of their "
                               f"{n_images} images")
        del projected
        n = proj.shape[0]
        timeline: list[tuple[int, float]] = []
        chosen = greedy_coreset(proj, coreset_size(n, self.coreset_ratio), start_index(n, self.seed), self.progress,
                                timeline)
        del proj
        t_gather = time.perf_counter()
        order = torch.argsort(chosen)  # gather in one streaming pass, then restore greedy order
        wanted = chosen[order]
        bank = torch.empty(len(chosen), int(projection.shape[0]))
        offset, pos = 0, 0
        for batch in batches:  # pass 2: gather the selected full vectors
            patches, _ = self.embed_patches(batch)
            hi = offset + patches.shape[0]
            stop = int(torch.searchsorted(wanted, hi))
            bank[order[pos:stop]] = patches[wanted[pos:stop] - offset].cpu()
            pos, offset = stop, hi
        if offset != n or pos != len(chosen):
            raise RuntimeError("The feature batches changed between PatchCore.fit's two passes.")
        self.memory_bank_ = bank.numpy()
        self.n_train_patches_ = n
        self._index = None
        # seconds to reach each coreset size: the fit time of every smaller ratio (``with_ratio``)
        self._fit_timeline = ([(steps, t - t_start) for steps, t in timeline], time.perf_counter() - t_gather)
        return self

    def fit_seconds_at(self, coreset_ratio: float) -> float | None:
        """Wall time this fit would have taken at a smaller ratio: the passes and greedy steps up to its
        size (measured on this fit's timeline, to one batch of greedy steps) plus the gathering pass."""
        timeline = getattr(self, "_fit_timeline", None)
        if timeline is None:
            return None
        size = coreset_size(self.n_train_patches_, coreset_ratio)
        steps, gather = timeline
        return next((t for done, t in steps if done >= size), steps[-1][1] if steps else 0.0) + gather

    def with_ratio(self, coreset_ratio: float) -> PatchCore:
        """The model ``fit`` would give at a smaller ``coreset_ratio``, without fitting again.

        The greedy rule is prefix-consistent: step t picks the point furthest from the t points
        before it, whatever the final size, and the bank is stored in greedy order, so the bank
        at a smaller ratio is the first ``coreset_size(n, ratio)`` rows of this one (same
        projection, same start).  ``tests/test_patchcore.py`` checks it against a fresh fit.
        """
        size = self._prefix_size(coreset_ratio)
        smaller = PatchCore(**{**self.get_params(), "coreset_ratio": coreset_ratio, "layers": self.layers},
                            device=self.device, progress=self.progress, knn_backend=self.knn_backend)
        smaller.memory_bank_ = self.memory_bank_[:size].copy()
        smaller.n_train_patches_ = self.n_train_patches_
        smaller._index = None
        return smaller

    def _prefix_size(self, coreset_ratio: float) -> int:
        """Rows of this bank that the model at ``coreset_ratio`` (<= the fitted ratio) keeps."""
        if not hasattr(self, "memory_bank_"):
            raise RuntimeError("PatchCore is not fitted: call fit() or load() first.")
        size = coreset_size(self.n_train_patches_, coreset_ratio)
        if coreset_ratio > self.coreset_ratio or size > len(self.memory_bank_):
            raise ValueError(f"with_ratio and score_nested take a ratio <= the fitted one ({self.coreset_ratio}), "
                             f"got {coreset_ratio}")
        return size

    def fit_summary(self) -> dict[str, int]:
        """Sizes of the learned state: memory-bank entries and the training patches they cover."""
        return {"memory_bank_size": int(self.memory_bank_.shape[0]), "n_train_patches": int(self.n_train_patches_)}

    def _knn(self, sizes: tuple[int, ...]) -> NestedNeighbours:
        """The (memoised) index of the bank's first ``sizes`` rows: one segment per prefix."""
        if getattr(self, "_index", None) is None:
            self._index = {}
        if sizes not in self._index:
            self._index[sizes] = NestedNeighbours(self.memory_bank_, list(sizes), self.device, self.knn_backend)
        return self._index[sizes]

    def patch_scores(self, features: FeatureBatches) -> tuple[np.ndarray, np.ndarray]:
        """(image scores (N,), patch-score grids (N, h, w)) before upsampling."""
        if not hasattr(self, "memory_bank_"):
            raise RuntimeError("PatchCore is not fitted: call fit() or load() first.")
        return self._patch_scores(features, [len(self.memory_bank_)])[0]

    @phase("patchcore score: embed, reweight")
    def _patch_scores(self, features: FeatureBatches, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``patch_scores`` of the models whose banks are this bank's first ``sizes`` rows, one search."""
        knn = self._knn(tuple(sizes))
        k = self.k if self.reweighting == "study" else 1
        scores: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
        grids: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
        for batch in as_batches(features):
            patches, (b, h, w) = self.embed_patches(batch)
            q = patches.cpu().numpy()
            for size, (d, idx) in knn.search(q, k).items():
                if self.reweighting == "study":
                    grid = reweight_study(d.astype(np.float64)).reshape(b, h * w)
                else:
                    grid = d[:, 0].reshape(b, h * w)
                if self.reweighting == "paper":
                    image = self._paper_image_scores(q.reshape(b, h * w, -1), grid, idx[:, 0].reshape(b, h * w), size)
                else:
                    image = grid.max(axis=1)
                scores[size].append(image)
                grids[size].append(grid.reshape(b, h, w))
        return [(np.concatenate(scores[s]).astype(np.float64), np.concatenate(grids[s]).astype(np.float32))
                for s in sizes]

    def _paper_image_scores(self, q: np.ndarray, grid: np.ndarray, nn_idx: np.ndarray, size: int) -> np.ndarray:
        bank = self.memory_bank_[:size]
        rows = np.arange(len(grid))
        top = grid.argmax(axis=1)
        s_star = grid[rows, top]
        m_star = bank[nn_idx[rows, top]]
        _, support = self._knn((size,)).search(m_star, self.k)[size]
        d = np.linalg.norm(bank[support] - q[rows, top][:, None], axis=2).astype(np.float64)
        e = np.exp(d - d.max(axis=1, keepdims=True))  # softmax(+d), shifted for stability
        return s_star * (1.0 - e[:, 0] / e.sum(axis=1))

    def score_nested(self, features: FeatureBatches, ratios: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[self.with_ratio(r).score(features) for r in ratios]`` with one kNN pass over this bank.

        The searches of all the prefix banks cost the largest one's alone (``NestedNeighbours``).
        """
        sizes = [self._prefix_size(r) for r in ratios]
        distinct = sorted(set(sizes))
        results = dict(zip(distinct, self._patch_scores(features, distinct)))
        return [self._maps(*results[s]) for s in sizes]

    def score(self, features: FeatureBatches) -> tuple[np.ndarray, np.ndarray]:
        """(image scores (N,) float64, anomaly maps (N, image_size, image_size) float32)."""
        return self._maps(*self.patch_scores(features))

    def _maps(self, image: np.ndarray, grids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = upsample_maps(torch.from_numpy(grids), self.image_size, self.blur_sigma)
        return image, maps.numpy()

    def save(self, path: str | Path) -> None:
        """Memory bank to ``path`` (.npy) and hyperparameters to ``path`` with .json."""
        path = Path(path)
        with atomic_open(path) as fh:
            np.save(fh, self.memory_bank_)
        write_json(path.with_suffix(".json"), {**self.get_params(), "n_train_patches": self.n_train_patches_})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", knn_backend: str = "auto") -> PatchCore:
        path = Path(path)
        params = read_record(path.with_suffix(".json"), path.parent)  # bounded: a --out may be handed over
        n = params.pop("n_train_patches")
        params["layers"] = tuple(params["layers"])
        params.setdefault("embedding", "study")  # saved before the option existed
        model = cls(**params, device=device, knn_backend=knn_backend)
        model.memory_bank_ = np.load(path)
        model.n_train_patches_ = n
        model._index = None
        return model
