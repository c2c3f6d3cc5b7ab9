"""Pieces both models share: feature batches in, 224x224 maps out."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F

from ad_core.timing import phase

FeatureBatch = Mapping[str, torch.Tensor]  # layer -> (B, C, h, w)
FeatureBatches = FeatureBatch | Iterable[FeatureBatch]


def as_batches(features: FeatureBatches, reiterable: bool = False) -> Iterable[FeatureBatch]:
    """Accept one batch (a mapping) or an iterable of batches.

    ``reiterable``: the caller iterates twice (PatchCore's memory-bounded fit), so a
    one-shot iterator (a generator) is refused with a message instead of silently
    yielding nothing the second time.
    """
    if isinstance(features, Mapping):
        return [features]
    if reiterable and iter(features) is features:
        raise TypeError(
            "PatchCore.fit iterates over the feature batches twice (projection + coreset, "
            "then gathering the selected patches); pass a list or a re-iterable object, not "
            "a generator."
        )
    return features


@phase("maps: upsample + blur")
def upsample_maps(patch_scores: torch.Tensor, size: int, blur_sigma: float | None) -> torch.Tensor:
    """(B, h, w) patch scores -> (B, size, size), bilinear; optional Gaussian blur."""
    maps = F.interpolate(patch_scores[:, None], size=(size, size), mode="bilinear", align_corners=False)
    if blur_sigma:
        maps = gaussian_blur(maps, blur_sigma)
    return maps[:, 0]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (B, 1, H, W) with the kernel size anomalib uses: 2 * int(4 sigma + 0.5) + 1, reflect padding.

    torchvision's ``gaussian_blur`` (the reference in the tests) convolves with the full 2-D
    kernel, k^2 = 1089 products per pixel at sigma 4.  The kernel is separable and the
    padding linear, so the blur is ``Kh @ map @ Kw^T`` with (n, n) banded operators: two
    BLAS matmuls, 20x faster on a CPU, the same maps to float rounding.
    """
    h, w = x.shape[-2:]
    kh = _blur_operator(h, float(sigma)).to(x.device, x.dtype)
    kw = kh if w == h else _blur_operator(w, float(sigma)).to(x.device, x.dtype)
    return kh @ x @ kw.T


@functools.lru_cache(maxsize=8)
def _blur_operator(n: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix of a 1-D Gaussian blur with reflect padding (``torch.nn.functional.pad`` 'reflect')."""
    k = 2 * int(4.0 * sigma + 0.5) + 1
    pad = k // 2
    if pad >= n:
        raise ValueError(f"a blur with sigma {sigma} needs maps larger than {pad} pixels, got {n}")
    taps = torch.arange(k, dtype=torch.float64) - pad
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    source = torch.arange(n)[:, None] + taps.long()[None, :]  # (n, k) input index of each tap
    source = source.abs()  # reflect at 0: -j -> j
    source = torch.where(source > n - 1, 2 * (n - 1) - source, source)  # reflect at n - 1
    op = torch.zeros(n, n, dtype=torch.float64)
    op.scatter_add_(1, source, weights.expand(n, k).contiguous())
    return op.float()


def coreset_size(n: int, ratio: float) -> int:
    return max(1, math.floor(n * ratio))
