"""Matrix products in reduced precision on a CPU: when they pay, and the numbers their bounds use.

The kNN filter (``knn_cpu``) multiplies in bfloat16, and the coreset (``kcenter_cpu``) does where
this CPU has bfloat16 instructions (AMX or AVX512-BF16 through oneDNN); both keep their
results exact with rigorous error bands built from the unit roundoffs below.  Both assume what
those kernels do: bfloat16 inputs, products formed exactly and summed in float32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

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
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags the kernel reports for this CPU (``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / Arm
            flags.update(value.split())
    return frozenset(flags)


BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX512-BF16, Arm BF16 (FEAT_BF16)


def bf16_native() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions, which the coreset multiplies with.

    Decided from the CPU's flags, never from a timing: the choice changes only the speed (the
    kernels' answers are exact either way, their bands cover both products), and a timing taken on
    a loaded machine could flip it from run to run.  With the instructions, a bfloat16 product
    ran ~2-5.6x faster than float32's here; without them torch emulates bfloat16, on one AVX2-only EPYC
    over 100x slower than float32 (so ``knn_cpu`` multiplies the same bfloat16 operands in float32 there).
    """
    return any(f in cpu_flags() for f in BF16_FLAGS)


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
