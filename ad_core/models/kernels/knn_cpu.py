"""Exact k-NN on a CPU through a bfloat16 product filter (with AMX: 0.28x the time of faiss's flat index).

Why hand-written: faiss's exact flat index runs at the float32 GEMM rate, and on a CPU with AMX a
bfloat16 product is ~2-5.6x faster than float32's; no maintained library searches
exactly in bfloat16 (faiss's bf16 storage and scalar quantisers return approximate neighbours).

One block of queries:

1. one bfloat16 GEMM gives every squared distance to within a proven band: the bank and the
   queries are centred on the bank's mean, and both squared norms ride along as three bfloat16
   parts each (``products.bf16_parts``), so the float32 accumulator forms ``|x|^2 + |y|^2 - 2 x.y``
   and only the result -- about the distance itself, not the norms -- is rounded to bfloat16;
2. the bank's columns are cut into groups of ``G`` and each group's smallest value is taken
   (a vectorised min over strided slices); the k-th smallest group minimum bounds the k-th
   smallest value from above, so with the band it gives a threshold no true k-nearest entry
   can exceed;
3. only the entries under the threshold (ELPV's banks: ~15 a query for k = 9) get the exact
   float64 distance, and the k smallest of those (ties: the lower bank index) are the answer --
   the same as a float64 brute-force search over the whole bank.

Where the CPU has no bfloat16 instructions (``products.bf16_native``: no AMX, AVX512-BF16 or Arm BF16),
torch emulates a bfloat16 GEMM far below float32's rate (a 512 x 1536 x 8192 product: float32 0.17 s,
bfloat16 over 30 s on a 2-core AVX2 EPYC), so the same bfloat16 operands are multiplied in float32
instead: a product of two bfloat16 values is exact in float32 and the sum is float32's, as in the
bfloat16 kernels, and the result is rounded to bfloat16 -- the band above holds unchanged, and the
neighbours and distances are the same (only the speed differs).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from ad_core.models.kernels.products import U16, U32, bf16_native, bf16_parts, gamma, squared_distance, true_float32

_QUERIES = 256  # queries per GEMM: with 2 cores the (256, bank) bfloat16 result is fastest here
_PREPARED = 16384  # queries whose operands are built at once (a few torch ops for all, not per GEMM)
_GROUP = 32  # bank entries per group minimum
_BANK_ROWS = 8192  # bank rows prepared at once
_NORM_PARTS = 3
# Output rounding: |result - float32 sum| <= 2^-7 |float32 sum| also for round-toward-zero, so
# <= rho |result| (the band does not rely on oneDNN rounding to nearest).
_RHO = 2.0**-7 / (1.0 - 2.0**-7)


@njit(cache=True, inline="always")
def _ordered(s):
    """bfloat16 bits (as int16) -> an int16 with the floats' order (negatives' magnitude bits flipped);
    the map is its own inverse."""
    return s ^ ((s >> 15) & 0x7FFF)


@njit(cache=True, parallel=True)
def _filter_select(key, band, queries, bank, k, out_d2, out_index, out_exact):
    """Exact k nearest of each query among the entries the filter keeps (``out_exact``: how many got an
    exact float64 distance, per query).

    key: (n, G, M) int16, the bfloat16 bits of the product for bank entry ``g * M + j``;
    band: (n,) float64, the per-query additive bound E (see ``FilteredNeighbours._augment``).
    """
    n, groups, m = key.shape
    size = bank.shape[0]
    for i in prange(n):
        low = np.empty(m, np.int16)  # group minima in the ordered integer domain: a vectorised min
        for j in range(m):
            low[j] = _ordered(key[i, 0, j])
        for g in range(1, groups):
            for j in range(m):
                v = _ordered(key[i, g, j])
                if v < low[j]:
                    low[j] = v
        smallest = np.full(k, np.int16(32767))  # the k smallest group minima, ascending
        for j in range(m):
            v = low[j]
            if v >= smallest[k - 1]:
                continue
            t = k - 1
            while t > 0 and smallest[t - 1] > v:
                smallest[t] = smallest[t - 1]
                t -= 1
            smallest[t] = v
        bits = np.empty(m, np.uint32)
        low_f = bits.view(np.float32)
        for j in range(m):
            bits[j] = np.uint32(np.uint16(_ordered(low[j]))) << 16
        kth_bits = np.empty(1, np.uint32)
        kth_bits[0] = np.uint32(np.uint16(_ordered(smallest[k - 1]))) << 16
        kth = np.float64(kth_bits.view(np.float32)[0])
        upper = kth + _RHO * abs(kth) + band[i]  # >= the k-th smallest exact distance
        reach = upper + band[i]  # an entry whose lower bound exceeds ``upper`` is not among the k
        threshold = reach / (1.0 - _RHO) if reach >= 0 else reach / (1.0 + _RHO)
        threshold += 1e-12 * abs(threshold)  # the rounding of these three lines
        best_d = np.full(k, np.inf)
        best_i = np.full(k, size, np.int64)
        exact = 0
        group_bits = np.empty(groups, np.uint32)
        values = group_bits.view(np.float32)
        for j in range(m):
            if low_f[j] > threshold:
                continue
            for g in range(groups):
                group_bits[g] = np.uint32(np.uint16(key[i, g, j])) << 16
            for g in range(groups):
                b = g * m + j
                if b >= size or values[g] > threshold:
                    continue
                d = squared_distance(queries, i, bank, b)
                exact += 1
                if d > best_d[k - 1] or (d == best_d[k - 1] and b > best_i[k - 1]):
                    continue
                t = k - 1  # insertion into the sorted k best, (distance, index) order
                while t > 0 and (best_d[t - 1] > d or (best_d[t - 1] == d and best_i[t - 1] > b)):
                    best_d[t] = best_d[t - 1]
                    best_i[t] = best_i[t - 1]
                    t -= 1
                best_d[t] = d
                best_i[t] = b
        out_d2[i] = best_d
        out_index[i] = best_i
        out_exact[i] = exact


def _product(queries: torch.Tensor, bank_t: torch.Tensor) -> torch.Tensor:
    """The filter's bfloat16 product of the bfloat16 ``queries`` operand with the bank's operand (bfloat16,
    or its float32 copy where bfloat16 GEMMs are emulated: see the module docstring)."""
    if bank_t.dtype == torch.bfloat16:
        return queries @ bank_t
    with true_float32():
        return (queries.float() @ bank_t).to(torch.bfloat16)


def _check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"kNN {what} row {int(np.argmax(bad))} (of {len(x)}) holds NaN or inf: the features "
                         "are not finite -- check the backbone weights and the input images.")


class FilteredNeighbours:
    """Exact k-NN over a float32 (N, d) bank: squared L2, float64, ties to the lower index."""

    def __init__(self, bank: np.ndarray):
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        _check_finite(self.bank, "bank")
        n, d = self.bank.shape
        bank = torch.from_numpy(self.bank)
        # row blocks: no (N, d) float64 or float32 temporary beside the bank (at 15 MVTec AD categories,
        # 113,680 x 1536, whole-bank temporaries held ~3 GB at once).  The mean's float64 sum order does
        # not matter to the results: it only centres the filter's product, whose band is proven for any
        # centre, and the neighbours' distances are exact float64 sums of the uncentred vectors.
        total = torch.zeros(d, dtype=torch.float64)
        for lo in range(0, n, _BANK_ROWS):
            total += bank[lo:lo + _BANK_ROWS].double().sum(0)
        self._mean = (total / n).float()
        self._width = -(-(d + 2 * _NORM_PARTS) // 32) * 32  # AMX takes K in steps of 32
        self._dim = d
        self._group_of = {}
        aug = torch.zeros(n + _GROUP, self._width, dtype=torch.bfloat16)  # room for padding rows
        y_max = residual_max = 0.0
        for lo in range(0, n, _BANK_ROWS):
            hi = min(n, lo + _BANK_ROWS)
            y = bank[lo:hi] - self._mean
            y16 = y.to(torch.bfloat16)
            sq = y.double().square().sum(1)
            y_max = max(y_max, float(sq.max().sqrt()), float(y16.double().norm(dim=1).max()))
            residual_max = max(residual_max, float((y - y16.float()).double().norm(dim=1).max()))
            aug[lo:hi, :d] = -2 * y16
            aug[lo:hi, d:d + _NORM_PARTS] = 1  # times the query's norm parts
            for c, part in enumerate(bf16_parts(sq, _NORM_PARTS)):
                aug[lo:hi, d + _NORM_PARTS + c] = part
        self._y = y_max * (1 + 1e-9)
        self._y_residual = residual_max * (1 + 1e-9)
        self._aug = aug

    def _bank_t(self, k: int) -> tuple[torch.Tensor, int, int]:
        """(the (width, G*M) product operand, G, M) for searches of k: M >= k groups."""
        groups = max(1, min(_GROUP, len(self.bank) // k))
        if groups not in self._group_of:
            n = len(self.bank)
            m = -(-n // groups)
            aug = self._aug[:groups * m].clone()
            aug[n:] = 0
            aug[n:, self._dim + _NORM_PARTS] = float("inf")  # padding entries: never below a threshold
            operand = aug.T.contiguous()
            self._group_of[groups] = operand if bf16_native() else operand.float(), groups, m
        return self._group_of[groups]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances (Q, k) float64 ascending, indices (Q, k) int64); k <= N."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _check_finite(queries, "query")
        bank_t, groups, m = self._bank_t(k)
        out_d2 = np.empty((len(queries), k))
        out_index = np.empty((len(queries), k), np.int64)
        self.exact_counts = np.empty(len(queries), np.int64)  # of the latest search: entries given float64 sums
        for start in range(0, len(queries), _PREPARED):
            part = queries[start:start + _PREPARED]
            aug, band = self._augment(part)
            for lo in range(0, len(part), _QUERIES):
                hi = min(len(part), lo + _QUERIES)
                key = _product(aug[lo:hi], bank_t)
                _filter_select(key.view(torch.int16).numpy().reshape(hi - lo, groups, m), band[lo:hi],
                               part[lo:hi], self.bank, k, out_d2[start + lo:start + hi],
                               out_index[start + lo:start + hi], self.exact_counts[start + lo:start + hi])
        return out_d2, out_index

    def _augment(self, queries: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """(bfloat16 (n, width) product operands, float64 (n,) additive bands E).

        Their product with the bank's operand is ``key``, and the exact ``|x - y|^2`` lies within
        ``rho |key| + E`` of it, E the sum of: the inputs' bfloat16 rounding,
        2 (|x - x16| Y + |x| |y - y16|_max) (Cauchy-Schwarz, Y = max |y|); the norm parts,
        2^-23 (|x|^2 + Y^2); the float32 sum of the width's exact products, gamma (|x| + Y)^2; the
        float32 centring, 3 u (|x| + Y)^2; and, absolute, AMX's flushing of subnormal inputs and
        results to zero, < 2^-100 (1 + |x| + Y)^2.
        """
        x = torch.from_numpy(queries) - self._mean
        x16 = x.to(torch.bfloat16)
        sq = x.double().square().sum(1)
        norm = sq.sqrt() * (1 + 2 * U16)  # also bounds |x16|
        residual = (x - x16.float()).double().norm(dim=1)
        aug = torch.zeros(len(queries), self._width, dtype=torch.bfloat16)
        d = self._dim
        aug[:, :d] = x16
        for c, part in enumerate(bf16_parts(sq, _NORM_PARTS)):
            aug[:, d + c] = part
        aug[:, d + _NORM_PARTS:d + 2 * _NORM_PARTS] = 1
        y = self._y
        band = (2 * (residual * y + norm * self._y_residual) + 2.0**-23 * (sq + y * y)
                + (gamma(self._width) + 3 * U32) * (norm + y) ** 2)
        return aug, (band * (1 + 2.0**-20) + 2.0**-100 * (1 + norm + y) ** 2).numpy()
