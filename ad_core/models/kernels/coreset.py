"""Greedy (furthest-point) coreset on a Johnson-Lindenstrauss projection (docs/protocol.md §5).

Memory: the full patches are never held together; the caller streams them through the
projection and keeps only the (N, 128) result.  No N x N distance matrix is ever formed.
Two implementations of the same rule (add the point furthest from the chosen ones; first
index on ties, as anomalib's ``KCenterGreedy``):
- CPU: ``kcenter_cpu`` -- the greedy picks of up to ~1,000 steps at a time among the points
  furthest from the chosen ones, then one matrix product (bfloat16 where the CPU has fast
  bfloat16, else float32; a rigorous error band, exact float64 distances where it cannot
  decide) updates every distance: ELPV-poly's 461k patches to 23k centres in 14 s (float32
  products: 21 s) against 117 s for the triangle-inequality kernel it replaced (same machine,
  the same indices);
- CUDA: ``greedy_coreset_dense`` -- one pass over all points per step.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ad_core.models.kernels.kcenter_cpu import BatchedKCenter
from ad_core.timing import phase


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

    CUDA tensors take the dense GPU pass, everything else the batched CPU kernel; both
    return the greedy rule's indices (they can differ only where two candidates are equally
    far to float32 precision).  ``timeline``: (points chosen, ``time.perf_counter()``) is
    appended after every batch of steps (CPU: up to ``kcenter_cpu.MAX_BATCH``; CUDA: ~1% of
    the steps), so the time to reach any smaller size is known to that resolution.
    """
    if features.is_cuda:
        return greedy_coreset_dense(features, size, start, progress, timeline=timeline)
    return greedy_coreset_cpu(features.detach().float().contiguous().numpy(), size, start, progress, timeline)


def greedy_coreset_cpu(x: np.ndarray, size: int, start: int, progress: bool = False,
                       timeline: list[tuple[int, float]] | None = None) -> torch.Tensor:
    """The CPU kernel on a float32 (N, d) array; see ``kcenter_cpu``."""
    _check_size(x.shape[0], size)
    state = BatchedKCenter(x, size, start)
    with tqdm(total=size, initial=1, desc="coreset", disable=not progress, leave=False) as bar:
        while state.done < size:
            before = state.done
            state.advance()
            bar.update(state.done - before)
            if timeline is not None:
                timeline.append((state.done, time.perf_counter()))
    return torch.from_numpy(state.selected)


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
