"""Exact L2 nearest neighbours with faiss (a GPU index when the data lives on CUDA)."""

from __future__ import annotations

import faiss
import numpy as np
import torch


class NearestNeighbours:
    """Exact k-NN search over a fixed bank (M, d) float32; distances are L2 (not squared)."""

    def __init__(self, bank: np.ndarray, device: torch.device | str = "cpu"):
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        index = faiss.IndexFlatL2(bank.shape[1])
        if torch.device(device).type == "cuda" and hasattr(faiss, "StandardGpuResources"):
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, torch.device(device).index or 0, index)
        index.add(bank)
        self.index = index
        self.size = bank.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k) ascending, indices (Q, k)) of the k nearest bank rows."""
        k = min(k, self.size)
        d2, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.sqrt(np.maximum(d2, 0.0)), idx
