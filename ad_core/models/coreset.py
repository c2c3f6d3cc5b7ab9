"""Greedy (furthest-point) coreset on a Johnson-Lindenstrauss projection (STUDY.md §5).

Memory: the full patches are never held together; the caller streams them through
``project`` and keeps only the (N, 128) projection.  Each greedy step is one
matrix-vector product on the projection (squared norms precomputed), and no N x N
distance matrix is ever formed.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def jl_matrix(dim_in: int, dim_out: int, seed: int) -> torch.Tensor:
    """Gaussian JL projection (dim_in, dim_out), entries N(0, 1/dim_out), from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(dim_in, dim_out, generator=g) / dim_out**0.5


def start_index(n: int, seed: int) -> int:
    """The first coreset point, drawn from the seeded generator (after the JL matrix's)."""
    g = torch.Generator().manual_seed(seed + 1)
    return int(torch.randint(n, (1,), generator=g))


def greedy_coreset(features: torch.Tensor, size: int, start: int, progress: bool = False,
                   chunk: int = 1 << 20) -> torch.Tensor:
    """Indices (size,) of a furthest-point coreset of ``features`` (N, d), starting at ``start``.

    Step: add the point whose distance to its nearest selected point is largest (first
    index on ties), as anomalib's ``KCenterGreedy`` does.  ``chunk`` rows are processed
    at a time so the temporary of one step stays small on huge N.
    """
    n = features.shape[0]
    if not 0 < size <= n:
        raise ValueError(f"coreset size must be in 1..{n}, got {size}")
    sq = (features * features).sum(1)
    min_d2 = torch.full((n,), float("inf"), device=features.device)
    selected = torch.empty(size, dtype=torch.long)
    idx = start
    for step in tqdm(range(size), desc="coreset", disable=not progress, leave=False):
        selected[step] = idx
        centre = features[idx]
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            d2 = sq[lo:hi] - 2.0 * (features[lo:hi] @ centre) + sq[idx]
            torch.minimum(min_d2[lo:hi], d2.clamp_min_(0.0), out=min_d2[lo:hi])
        min_d2[idx] = 0.0
        idx = int(torch.argmax(min_d2))
    return selected
