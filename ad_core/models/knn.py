"""Exact L2 nearest neighbours over a fixed bank.

Backends:

- ``bfloat16`` (the CPU default where this CPU multiplies bfloat16 faster, ``products.bf16_is_faster``):
  one bfloat16 GEMM filters, exact float64 distances decide (``knn_cpu``): the same neighbours
  as a float64 brute-force search, ties to the lower index.  On ELPV's banks (23k x 152, k=9,
  2 cores with AMX) ~0.3x faiss's time (``benchmarks/bench_knn.py``; numbers in the README);
- ``faiss`` (the CPU default otherwise): its flat index, at the float32 GEMM rate;
- ``faiss-gpu`` (on CUDA where the installed faiss has a GPU index);
- ``torch`` (on CUDA otherwise; any device on request): one GEMM per block of queries,
  ``|q - m|^2 - 2 (q - m).(b - m) + |b - m|^2`` with ``m`` the bank's mean, then ``torch.topk``,
  the k selected distances recomputed directly.  Centring on the bank's mean removes the large
  common component of post-ReLU features before the expansion, which otherwise cancels in float32.

faiss and torch order near-equal distances by their float32 rounding; ``backend=`` overrides the
choice.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from ad_core.models.knn_cpu import FilteredNeighbours
from ad_core.models.products import bf16_is_faster
from ad_core.timing import phase

BACKENDS = ("auto", "bfloat16", "faiss", "faiss-gpu", "torch")
_QUERY_CHUNK = 1024  # queries per GEMM on the torch backend: a (1024, M) float32 block


def faiss_has_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def resolve_backend(device: torch.device | str = "cpu", backend: str = "auto") -> str:
    """The backend ``auto`` picks for ``device``: on the CPU bfloat16 where it is faster there, else faiss;
    on CUDA faiss-gpu, else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"kNN backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if torch.device(device).type != "cuda":
        return "bfloat16" if bf16_is_faster() else "faiss"
    return "faiss-gpu" if faiss_has_gpu() else "torch"


class NearestNeighbours:
    """Exact k-NN search over a fixed bank (M, d) float32; distances are L2 (not squared)."""

    def __init__(self, bank: np.ndarray, device: torch.device | str = "cpu", backend: str = "auto"):
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.device = torch.device(device)
        self.backend = resolve_backend(self.device, backend)
        self.size = bank.shape[0]
        if self.backend == "torch":
            centred = torch.from_numpy(bank).to(self.device)
            self._mean = centred.mean(0)
            centred = centred - self._mean
            self._bank = centred
            self._bank_t = centred.T.contiguous()
            self._bank_sq = centred.square().sum(1)
            return
        if self.backend == "bfloat16":
            self._filtered = FilteredNeighbours(bank)
            return
        index = faiss.IndexFlatL2(bank.shape[1])
        if self.backend == "faiss-gpu":
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, self.device.index or 0, index)
        index.add(bank)
        self.index = index

    @phase("knn search")
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k) ascending, indices (Q, k)) of the k nearest bank rows."""
        k = min(k, self.size)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.backend == "torch":
            d2, idx = self._search_torch(torch.from_numpy(queries).to(self.device), k)
        elif self.backend == "bfloat16":
            d2, idx = self._filtered.search(queries, k)
            return np.sqrt(d2).astype(np.float32), idx  # the other backends' type, from the float64 sums
        else:
            d2, idx = self.index.search(queries, k)
        return np.sqrt(np.maximum(d2, 0.0)), idx

    def _search_torch(self, q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        dists, idxs = [], []
        for lo in range(0, q.shape[0], _QUERY_CHUNK):
            part = q[lo:lo + _QUERY_CHUNK] - self._mean
            d2 = torch.addmm(self._bank_sq[None, :], part, self._bank_t, alpha=-2.0)
            d2 += part.square().sum(1, keepdim=True)
            _, indices = torch.topk(d2, k, dim=1, largest=False, sorted=False)
            # The expansion selects the k nearest; their distances are then taken directly
            # (Q x k x d, negligible next to the GEMM) so that a query equal to a bank row is
            # at distance 0 and not at sqrt(float32 cancellation error).
            exact = (part[:, None, :] - self._bank[indices]).square().sum(2)
            exact, order = torch.sort(exact, dim=1, stable=True)
            dists.append(exact.cpu())
            idxs.append(torch.gather(indices, 1, order).cpu())
        return torch.cat(dists).numpy(), torch.cat(idxs).numpy().astype(np.int64)


class NestedNeighbours:
    """Exact k-NN over the nested prefixes ``bank[:s]`` (``sizes``) of one bank, in one pass.

    The bank is cut into segments between consecutive sizes, each searched once; a prefix's
    k nearest are the k nearest of its segments' k nearest (ties: the lower bank index).
    PatchCore's coreset ablation scores the 1%, 5% and 10% banks of one greedy run this way
    at the cost of the 10% search alone.
    """

    def __init__(self, bank: np.ndarray, sizes: list[int], device: torch.device | str = "cpu",
                 backend: str = "auto"):
        self.sizes = sorted(set(sizes))
        if not self.sizes or self.sizes[0] < 1 or self.sizes[-1] > len(bank):
            raise ValueError(f"prefix sizes must lie in 1..{len(bank)}, got {sizes}")
        bounds = [0, *self.sizes]
        self.segments = [(lo, NearestNeighbours(bank[lo:hi], device, backend)) for lo, hi in zip(bounds, bounds[1:])]

    def search(self, queries: np.ndarray, k: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{size: (distances (Q, min(k, size)) ascending, bank indices)} for every prefix size."""
        out, dists, idxs = {}, [], []
        for (lo, index), size in zip(self.segments, self.sizes):
            d, i = index.search(queries, k)
            dists.append(d)
            idxs.append(i + lo)
            if len(dists) == 1:
                out[size] = d, i
                continue
            d_all, i_all = np.concatenate(dists, axis=1), np.concatenate(idxs, axis=1)
            order = np.argsort(d_all, axis=1, kind="stable")[:, :min(k, size)]  # segments in bank order
            out[size] = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
        return out
