"""Greedy (furthest-point) coreset on a Johnson-Lindenstrauss projection (docs/protocol.md §5).

Memory: the full patches are never held together; the caller streams them through the
projection and keeps only the (N, 128) result.  No N x N distance matrix is ever formed.
Two implementations of the same rule (add the point furthest from the chosen ones; first
index on ties, as anomalib's ``KCenterGreedy``):
- CPU: ``kcenter_cpu`` -- exact triangle-inequality pruning, exact distances for a few % of
  the points per step (ELPV-mono's 295k patches: 6.4 s against 242 s for one dense pass per
  step, the same indices);
- CUDA: ``greedy_coreset_dense`` -- one pass over all points per step, which a GPU streams
  faster than the pruning's scattered reads.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ad_core.models.kcenter_cpu import KCenterState
from ad_core.timing import phase

BOUND_DIMS = 16  # dims of the PCA projection used for the pruning's lower bounds
_PCA_SAMPLE = 16384  # rows the PCA is estimated on (any orthonormal basis is exact; PCA only prunes more)
_CHUNK = 65536
DENSE_SWITCH = 0.3  # exact distances per step, as a fraction of N, above which full passes are cheaper


def jl_matrix(dim_in: int, dim_out: int, seed: int) -> torch.Tensor:
    """Gaussian JL projection (dim_in, dim_out), entries N(0, 1/dim_out), from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(dim_in, dim_out, generator=g) / dim_out**0.5


def start_index(n: int, seed: int) -> int:
    """The first coreset point, drawn from the seeded generator (after the JL matrix's)."""
    g = torch.Generator().manual_seed(seed + 1)
    return int(torch.randint(n, (1,), generator=g))


@phase("coreset")
def greedy_coreset(features: torch.Tensor, size: int, start: int, progress: bool = False,
                   timeline: list[tuple[int, float]] | None = None) -> torch.Tensor:
    """Indices (size,) of a furthest-point coreset of ``features`` (N, d), starting at ``start``.

    CUDA tensors take the dense GPU pass, everything else the pruned CPU kernel; both
    return the greedy rule's indices (they can differ only where two candidates are equally
    far to float32 precision).  ``timeline``: (points chosen, ``time.perf_counter()``) is
    appended every ~1% of the steps, so the time to reach any smaller size is known.
    """
    if features.is_cuda:
        return greedy_coreset_dense(features, size, start, progress, timeline=timeline)
    return greedy_coreset_cpu(features.detach().float().contiguous().numpy(), size, start, progress, timeline)


def greedy_coreset_cpu(x: np.ndarray, size: int, start: int, progress: bool = False,
                       timeline: list[tuple[int, float]] | None = None) -> torch.Tensor:
    """The CPU kernel on a float32 (N, d) array; see ``kcenter_cpu``.

    Pruned steps while the bounds skip most points (real CNN features: exact distances for a
    few % of the points per step); full passes once a stretch of steps has needed exact
    distances for more than ``DENSE_SWITCH`` of the points (unstructured data, e.g. i.i.d.
    noise in 128 dims, where scattered reads would cost more than one sequential pass).
    """
    _check_size(x.shape[0], size)
    x = np.ascontiguousarray(x, dtype=np.float32)
    z, zerr = bound_projection(x, min(BOUND_DIMS, x.shape[1]))
    state = KCenterState(x, z, zerr, size, start)
    chunk = max(16, size // 100)  # steps per kernel call: progress updates and the switch test
    with tqdm(total=size, initial=1, desc="coreset", disable=not progress, leave=False) as bar:
        while state.done < size:
            before = state.done
            state.advance(chunk)
            bar.update(state.done - before)
            if timeline is not None:
                timeline.append((state.done, time.perf_counter()))
            if state.done >= 32 and state.touched[before:state.done].mean() > DENSE_SWITCH * len(x):
                state.switch_to_dense()
    if timeline is not None:
        timeline.append((state.done, time.perf_counter()))
    return torch.from_numpy(state.selected)


def bound_projection(x: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """(x @ V as float32 (N, k), bound on the rounding of a difference of two rows' norms).

    V: the top-k principal axes (orthonormal, float64) of a row subsample, so that
    |V^T (a - b)| <= |a - b| holds exactly and the bound is tight where the data varies most.
    """
    sample = torch.from_numpy(x[:: max(1, len(x) // _PCA_SAMPLE)]).double()
    centred = sample - sample.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    basis = vectors[:, -k:].contiguous()  # eigh sorts ascending
    z = np.empty((len(x), k), np.float32)
    peak = 0.0
    for lo in range(0, len(x), _CHUNK):  # float64 in chunks: no (N, d) float64 copy
        part = torch.from_numpy(x[lo:lo + _CHUNK]).double() @ basis
        peak = max(peak, float(part.abs().max()))
        z[lo:lo + _CHUNK] = part.float().numpy()
    # float32 rounding moves each coordinate by <= 2^-24 |z|, a difference of two rows by
    # <= 2 sqrt(k) 2^-24 max|z| in norm; doubled for the float64 products
    return z, 2.0 * np.sqrt(k) * peak * 2.0**-23 + 1e-12


def greedy_coreset_dense(features: torch.Tensor, size: int, start: int, progress: bool = False,
                         chunk: int = 1 << 16, timeline: list[tuple[int, float]] | None = None) -> torch.Tensor:
    """The dense rule on any device: one pass over all points per step (GPU path, reference).

    Distances are summed from differences, not expanded as |x|^2 - 2xc + |c|^2: features
    share a large common component (post-ReLU maps), where the expansion cancels
    catastrophically in float32.  ``chunk`` rows per temporary bound its memory.
    """
    n = features.shape[0]
    _check_size(n, size)
    min_d2 = torch.full((n,), float("inf"), device=features.device)
    selected = torch.empty(size, dtype=torch.long)
    idx = start
    for step in tqdm(range(size), desc="coreset", disable=not progress, leave=False):
        selected[step] = idx
        centre = features[idx]
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            d2 = (features[lo:hi] - centre).square_().sum(1)
            torch.minimum(min_d2[lo:hi], d2, out=min_d2[lo:hi])
        min_d2[idx] = 0.0
        idx = int(torch.argmax(min_d2))
        if timeline is not None and (step % max(16, size // 100) == 0 or step == size - 1):
            timeline.append((step + 1, time.perf_counter()))
    return selected


def _check_size(n: int, size: int) -> None:
    if not 0 < size <= n:
        raise ValueError(f"coreset size must be in 1..{n}, got {size}")
