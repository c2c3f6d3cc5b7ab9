"""Exact greedy k-center (furthest-point) selection on the CPU, many centres per pass.

Why hand-written: the study's coreset is the plain greedy rule (each step adds the point
furthest from the points chosen so far, the first index on ties), which anomalib's
``KCenterGreedy`` runs as one full (N, d) pass per step.  No maintained library does that
rule exactly, seeded, in 128 dims (fpsample's FPS is limited to 8 dims); at the study's
sizes the full passes take tens of minutes on a laptop CPU.  This kernel returns the same
indices with the distance updates of many steps done as one matrix product.

Why it works: after a few hundred steps the rule's next centres are almost always among
the points that are furthest from the chosen ones now (on ELPV-poly's 461k patches, the
next 1,024 centres lie among the top ~1,300 points).  One batch:

1. pool: the ``pool_size`` points with the largest distance ``m(x)`` to the chosen centres,
   and ``cutoff``, the largest ``m`` outside the pool;
2. the greedy rule inside the pool, lazily: the candidate is the pool's largest value, brought
   up to date with the batch's new centres only when it is the candidate.  An up-to-date
   candidate above ``cutoff`` is the rule's pick (values only decrease, every point outside
   the pool is at most ``cutoff``, and the first index wins ties as the pool is sorted);
   the batch ends at the first candidate at or below ``cutoff``;
3. every ``m(x)`` is updated with the batch's centres at once: a matrix product on
   mean-centred copies gives each squared distance to within a rigorous bound (rounding of
   the centring, of the inputs and of the product, ``_band``); only the pairs whose bound
   reaches below ``m(x)`` get the exact distance.  The product runs in bfloat16 where this CPU
   multiplies bfloat16 faster than float32 (AMX / AVX512-BF16: ELPV-poly 14 s against 21 s),
   else in float32; the band is wider in bfloat16 (~4% of a typical distance against ~0.01%),
   so a few more pairs get exact sums, and the indices are the same either way.

Exact distances are squared L2 summed in float64 from the float32 inputs everywhere, so the
indices are those of the dense rule on the same sums.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from ad_core.models.kernels.products import U16, U32, bf16_native, gamma, squared_distance, true_float32

PRODUCTS = ("auto", "float32", "bfloat16")
POOL_SIZE = 4096
MAX_BATCH = 1024  # centres per pass; the lazy pool updates grow with its square
_ROWS = 2048  # rows per matrix product: its (2048, MAX_BATCH) float32 result is at most 8 MB


@njit(cache=True, parallel=True)
def _distances_to(x: np.ndarray, p: int) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in prange(x.shape[0]):
        out[i] = squared_distance(x, i, x, p)
    return out


@njit(cache=True)
def _pool_greedy(x, m, pool, cutoff, selected, done, limit):
    """Greedy picks inside ``pool`` (sorted indices) into ``selected[done:]``; return how many.

    ``value[u]`` is pool point u's distance to the centres chosen before the batch and to the
    batch's first ``fresh[u]`` centres: an upper bound of its current value.
    """
    n_pool = pool.shape[0]
    value = np.empty(n_pool)
    fresh = np.zeros(n_pool, np.int64)
    for u in range(n_pool):
        value[u] = m[pool[u]]
    b = 0
    while b < limit:
        u = np.argmax(value)  # the first position on ties = the lowest point index
        if fresh[u] < b:
            v = value[u]
            for t in range(fresh[u], b):
                d = squared_distance(x, pool[u], x, selected[done + t])
                if d < v:
                    v = d
            value[u], fresh[u] = v, b
            continue  # re-take the largest with this one up to date
        if value[u] <= cutoff:
            break
        selected[done + b] = pool[u]
        value[u], fresh[u] = 0.0, b + 1
        b += 1
    return b


@njit(cache=True, parallel=True)
def _update(x, m, lo, gram, row_norm, row_sq, centres, centre_norm, centre_sq, kappa):
    """``m[lo + r] = min(m, exact d2 to centre j)`` over the pairs the product cannot rule out.

    ``gram[r, j]``: the product of the centred row and centre (as float32); the approximate distance
    ``row_sq + centre_sq - 2 gram`` is within ``kappa (|row| + |centre|)^2`` of the exact one.
    """
    for r in prange(gram.shape[0]):
        i = lo + r
        best = m[i]
        for j in range(gram.shape[1]):
            s = row_norm[r] + centre_norm[j]
            approx = row_sq[r] + centre_sq[j] - 2.0 * np.float64(gram[r, j])
            if approx - kappa * s * s < best:
                d = squared_distance(x, i, x, centres[j])
                if d < best:
                    best = d
        m[i] = best


def _band(dim: int, dtype: torch.dtype = torch.float32) -> float:
    """kappa: |approximate - exact| <= kappa (|x'| + |c'|)^2, with a factor 2 of margin.

    float32: the product of two d-vectors errs by <= gamma_d |x'||c'| <= gamma_d S^2 / 4 (any
    summation order, gamma_d = d u / (1 - d u)), twice that in the distance; centring in float32
    moves x' - c' by <= u S, the squared distance by <= 2 u S^2 (1 + u).  bfloat16 adds the
    rounding of both inputs (2 u16 |x'||c'|, their products exact in the float32 accumulator) and
    of the bfloat16 result (u16 |x'||c'|).
    """
    relative = gamma(dim)
    if dtype == torch.bfloat16:
        relative += 3.01 * U16
    return 2.0 * (relative / 2.0 + 3.0 * U32)


def product_dtype() -> torch.dtype:
    """bfloat16 where this CPU has bfloat16 instructions (``bf16_native``), else float32: the band
    covers either product's rounding, so the chosen indices are the same."""
    return torch.bfloat16 if bf16_native() else torch.float32


class BatchedKCenter:
    """State of one greedy run on a float32 (N, d) array: ``advance`` chooses more centres."""

    def __init__(self, x: np.ndarray, size: int, start: int, pool_size: int = POOL_SIZE,
                 max_batch: int = MAX_BATCH, product: str = "auto"):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        n, d = self.x.shape
        self.size, self.pool_size, self.max_batch = size, min(pool_size, n), max_batch
        if product not in PRODUCTS:
            raise ValueError(f"product must be one of {PRODUCTS}, got {product!r}")
        mean = self.x[:: max(1, n // 16384)].astype(np.float64).mean(0).astype(np.float32)
        self.dtype = product_dtype() if product == "auto" else getattr(torch, product)
        # centred copy in the product's dtype (any mean is exact; the mean keeps the band small),
        # built in chunks: no (N, d) float32 or float64 temporary next to it
        self.centred = torch.empty((n, d), dtype=self.dtype)
        self.sq = np.empty(n)
        for lo in range(0, n, 65536):
            part = torch.from_numpy(self.x[lo:lo + 65536] - mean)
            self.sq[lo:lo + 65536] = part.double().square().sum(1).numpy()
            self.centred[lo:lo + 65536] = part.to(self.dtype)
        self.norm = np.sqrt(self.sq)
        self.kappa = _band(d, self.dtype)
        self.m = _distances_to(self.x, start)
        self.m[start] = 0.0
        self.selected = np.empty(size, np.int64)
        self.selected[0] = start
        self.done = 1

    def advance(self) -> None:
        """One batch: pool, greedy picks inside it, one update of every distance."""
        n = len(self.m)
        limit = min(self.max_batch, self.size - self.done)
        if self.pool_size < n:
            part = np.argpartition(self.m, n - self.pool_size - 1)
            pool = np.sort(part[n - self.pool_size:])
            cutoff = self.m[part[n - self.pool_size - 1]]
        else:
            pool, cutoff = np.arange(n), -np.inf
        b = _pool_greedy(self.x, self.m, pool, cutoff, self.selected, self.done, limit)
        if b == 0:  # the pool's best ties with a point outside it: one step of the plain rule
            self.selected[self.done] = int(np.argmax(self.m))
            b = 1
        centres = self.selected[self.done:self.done + b]
        self._update(centres)
        self.done += b

    def gram(self, rows: slice | np.ndarray, centres: np.ndarray) -> np.ndarray:
        """float32 (len(rows), len(centres)) products of centred rows and centres (point indices), as the update
        computes them in this run's dtype."""
        with true_float32():
            return self._products(rows, self._block(centres))

    def _block(self, centres: np.ndarray) -> torch.Tensor:
        return self.centred[torch.from_numpy(centres)].T.contiguous()  # (d, B)

    def _products(self, rows: slice | np.ndarray, block: torch.Tensor) -> np.ndarray:
        return (self.centred[rows] @ block).float().numpy()

    def _update(self, centres: np.ndarray) -> None:
        block = self._block(centres)
        c_sq, c_norm = self.sq[centres], self.norm[centres]
        n = len(self.m)
        with true_float32():
            for lo in range(0, n, _ROWS):
                hi = min(n, lo + _ROWS)
                gram = self._products(slice(lo, hi), block)
                _update(self.x, self.m, lo, gram, self.norm[lo:hi], self.sq[lo:hi], centres, c_norm, c_sq,
                        self.kappa)
