"""Exact L2 nearest neighbours over a fixed bank, through one interface and a registry of backends.

Every backend is a class with ``Backend(bank (M, d) float32, device)`` and
``search(queries (Q, d) float32, k) -> (L2 distances (Q, k) float32 ascending, indices (Q, k) int64)``,
registered in ``BACKENDS`` with the check that says whether it can run here.

- ``exact`` (the CPU rule): one bfloat16 GEMM filters, exact float64 distances decide (``knn_cpu``):
  the same neighbours as a float64 brute-force search, ties to the lower index, so its answers do
  not depend on the machine, the thread count or the load.  With bfloat16 instructions it takes
  ~0.3x faiss's time (``benchmarks/bench_knn.py``); without them the bfloat16 GEMM is emulated and
  slower, the answers the same;
- ``faiss``: its flat index, float32 (near-equal distances ordered by their float32 rounding);
  faiss is optional (``pip install faiss-cpu``, or the test extra) and imported only when used;
- ``faiss-gpu`` (the CUDA rule where the installed faiss has a GPU index: the ``[gpu]`` extra's
  ``faiss-gpu`` wheel);
- ``torch`` (the CUDA rule otherwise; any device on request): one GEMM per block of queries,
  ``|q - m|^2 - 2 (q - m).(b - m) + |b - m|^2`` with ``m`` the bank's mean, then ``torch.topk``,
  the k selected distances recomputed directly.  Centring on the bank's mean removes the large
  common component of post-ReLU features before the expansion, which otherwise cancels in float32.

``resolve_backend`` is the one rule (from the device alone, never from a timing); ``--knn-backend``
overrides it, and the run records the backend it used.  Adding a backend: a class with that
interface and one ``Backend`` entry below.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ad_core.models.kernels.knn_cpu import FilteredNeighbours
from ad_core.timing import phase

_QUERY_CHUNK = 1024  # queries per GEMM on the torch backend: a (1024, M) float32 block


class KnnBackendError(ValueError):
    """A kNN backend that is unknown or cannot run on this machine."""


class Searcher(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


FAISS_MISSING = ("faiss is not installed: pip install faiss-cpu (the test extra has it; on a CUDA box "
                 "pip install -e '.[gpu]' brings faiss-gpu), or use --knn-backend exact")


def faiss_installed() -> bool:
    return importlib.util.find_spec("faiss") is not None


def faiss_conflict() -> str | None:
    """Why the faiss at hand cannot be trusted: faiss-cpu and a faiss-gpu wheel both installed (they
    own one ``faiss`` module; the files of whichever installed last win), else None."""
    from importlib import metadata

    installed = []
    for name in ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        installed.append(name)
    if "faiss-cpu" in installed and len(installed) > 1:
        return (f"{' and '.join(installed)} are both installed and own one faiss module; pip uninstall -y "
                "faiss-cpu on a CUDA box (the [gpu] extra), or the faiss-gpu wheel on a CPU one ([test])")
    return None


def faiss_has_gpu() -> bool:
    """The installed faiss (if any) has a GPU index and sees a GPU."""
    if not faiss_installed():
        return False
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class ExactSearch:
    """``knn_cpu.FilteredNeighbours``: float64-exact neighbours, ties to the lower index."""

    def __init__(self, bank: np.ndarray, device: torch.device):
        self._filtered = FilteredNeighbours(bank)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d2, idx = self._filtered.search(queries, k)
        return np.sqrt(d2).astype(np.float32), idx  # the other backends' type, from the float64 sums


class FaissSearch:
    """faiss's flat L2 index (on the GPU when ``gpu``)."""

    def __init__(self, bank: np.ndarray, device: torch.device, gpu: bool = False):
        import faiss

        index = faiss.IndexFlatL2(bank.shape[1])
        if gpu:
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, device.index or 0, index)
        index.add(bank)
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d2, idx = self.index.search(queries, k)
        return np.sqrt(np.maximum(d2, 0.0)), idx


class TorchSearch:
    """One centred float32 GEMM per block of queries on ``device``, the k selected recomputed directly."""

    def __init__(self, bank: np.ndarray, device: torch.device):
        self.device = device
        centred = torch.from_numpy(bank).to(device)
        self._mean = centred.mean(0)
        centred = centred - self._mean
        self._bank = centred
        self._bank_t = centred.T.contiguous()
        self._bank_sq = centred.square().sum(1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(queries).to(self.device)
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
        d2 = torch.cat(dists).numpy()
        return np.sqrt(np.maximum(d2, 0.0)), torch.cat(idxs).numpy().astype(np.int64)


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    build: Callable[[np.ndarray, torch.device], Searcher]
    unavailable: Callable[[torch.device], str | None] = lambda device: None  # why it cannot run, or None


def _needs_faiss(device: torch.device) -> str | None:
    return FAISS_MISSING if not faiss_installed() else faiss_conflict()


def _needs_faiss_gpu(device: torch.device) -> str | None:
    if not faiss_installed():
        return "faiss is not installed: on a CUDA box pip install -e '.[gpu]' brings faiss-gpu; or use " \
               "--knn-backend torch"
    if faiss_conflict():
        return faiss_conflict()
    if not faiss_has_gpu():
        return "the installed faiss has no GPU index (faiss-cpu); use --knn-backend torch on CUDA"
    if device.type != "cuda":
        return "faiss-gpu searches on a CUDA device; run with --device cuda"
    return None


REGISTRY: dict[str, Backend] = {b.name: b for b in (
    Backend("exact", "bfloat16 filter + float64 distances (knn_cpu): float64-exact, ties to the lower index",
            ExactSearch),
    Backend("faiss", "faiss IndexFlatL2 on the CPU (float32)", FaissSearch, _needs_faiss),
    Backend("faiss-gpu", "faiss GpuIndexFlatL2 (float32)", lambda bank, device: FaissSearch(bank, device, gpu=True),
            _needs_faiss_gpu),
    Backend("torch", "one centred float32 GEMM + topk on the device, k distances recomputed", TorchSearch),
)}
BACKENDS = ("auto", *REGISTRY)


def resolve_backend(device: torch.device | str = "cpu", backend: str = "auto") -> str:
    """The backend a search on ``device`` uses: ``backend`` when given (checked), else the one rule --
    ``exact`` on a CPU, ``faiss-gpu`` on CUDA where faiss has a GPU index, else ``torch``."""
    if backend not in BACKENDS:
        raise KnnBackendError(f"kNN backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = torch.device("cuda" if str(device) == "auto" and torch.cuda.is_available() else
                          "cpu" if str(device) == "auto" else device)
    if backend == "auto":
        if device.type != "cuda":
            return "exact"
        return "faiss-gpu" if faiss_has_gpu() else "torch"
    why = REGISTRY[backend].unavailable(device)
    if why:
        raise KnnBackendError(why)
    return backend


class NearestNeighbours:
    """k-NN search over a fixed bank (M, d) float32 by the resolved backend; distances are L2 (not squared)."""

    def __init__(self, bank: np.ndarray, device: torch.device | str = "cpu", backend: str = "auto"):
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        self.device = torch.device(device)
        self.backend = resolve_backend(self.device, backend)
        self.size = bank.shape[0]
        self._searcher = REGISTRY[self.backend].build(bank, self.device)

    @phase("knn search")
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k) ascending, indices (Q, k)) of the k nearest bank rows."""
        k = min(k, self.size)
        return self._searcher.search(np.ascontiguousarray(queries, dtype=np.float32), k)


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
