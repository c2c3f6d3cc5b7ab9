"""Matrix products in reduced precision on a CPU: when they pay, and the numbers their bounds use.

The coreset (``kcenter_cpu``) and the kNN filter (``knn_cpu``) multiply in bfloat16 where this
CPU does so much faster than in float32 (AMX or AVX512-BF16 through oneDNN), and keep their
results exact with rigorous error bands built from the unit roundoffs below.  Both assume what
those kernels do: bfloat16 inputs, products formed exactly and summed in float32.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

import numpy as np
import torch
from numba import njit

# Reassociation lets LLVM vectorise the sums; the result is deterministic for a given CPU,
# and a different vector width can only move a distance by ~1e-16 relative.
_FASTMATH = {"reassoc", "contract", "nsz"}
U32 = 2.0**-24  # float32 unit roundoff
U16 = 2.0**-8  # bfloat16 unit roundoff (8 significant bits, round to nearest)


def gamma(n: int) -> float:
    """gamma_n = n u / (1 - n u), u the float32 unit roundoff: the relative error bound of a
    float32 sum of n exact products (Higham, Accuracy and Stability of Numerical Algorithms, 3.1)."""
    return n * U32 / (1.0 - n * U32)


@functools.cache
def bf16_speedup() -> float:
    """float32 / bfloat16 time of a (256, 160) x (160, 8192) product on this CPU (measured once, ~0.1 s).

    Best of 3 after two warm-up calls: the first call after start-up also builds oneDNN's kernel,
    and one warm-up left it in the timing often enough to flip the choice.  About 5.6 with AMX
    (this project's machine), ~2 with AVX512-BF16 alone, < 1 where bfloat16 is emulated.
    """
    def seconds(dtype: torch.dtype) -> float:
        a = torch.ones(256, 160, dtype=dtype)
        b = torch.ones(160, 8192, dtype=dtype)
        a @ b
        a @ b
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        return best

    return seconds(torch.float32) / seconds(torch.bfloat16)


def bf16_is_faster() -> bool:
    """Whether the CPU kernels multiply in bfloat16: its product is >= 1.4x faster than float32's.

    The choice changes only the speed (the kernels' answers are exact either way); 1.4 leaves
    room for the timing's noise on a CPU that emulates bfloat16 at about float32's rate.
    """
    return bf16_speedup() >= 1.4


@contextlib.contextmanager
def true_float32() -> Iterator[None]:
    """float32 matrix products at full precision (the bands assume them), restored afterwards."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def bf16_parts(x: torch.Tensor, parts: int = 3) -> list[torch.Tensor]:
    """float64 values as a sum of ``parts`` bfloat16 tensors, largest first.

    Three parts carry 24 significant bits: the sum is within ~2^-24 of ``x`` relative (each
    part is the rounding of what the previous ones left).
    """
    out, rest = [], x.double()
    for _ in range(parts):
        part = rest.to(torch.bfloat16)
        out.append(part)
        rest = rest - part.double()
    return out


@njit(cache=True, fastmath=_FASTMATH)
def squared_distance(a: np.ndarray, i: int, b: np.ndarray, j: int) -> float:
    """Squared L2 distance between rows a[i] and b[j] (float32), summed in float64: the exact
    distance every band in this package is measured against."""
    s = 0.0
    for t in range(a.shape[1]):
        diff = np.float64(a[i, t]) - np.float64(b[j, t])
        s += diff * diff
    return s
