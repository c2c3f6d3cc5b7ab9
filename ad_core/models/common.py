"""Pieces both models share: feature batches in, 224x224 maps out."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur as tv_blur

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


def upsample_maps(patch_scores: torch.Tensor, size: int, blur_sigma: float | None) -> torch.Tensor:
    """(B, h, w) patch scores -> (B, size, size), bilinear; optional Gaussian blur."""
    maps = F.interpolate(patch_scores[:, None], size=(size, size), mode="bilinear", align_corners=False)
    if blur_sigma:
        maps = gaussian_blur(maps, blur_sigma)
    return maps[:, 0]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (B, 1, H, W) with the kernel size anomalib uses: 2 * int(4 sigma + 0.5) + 1, reflect padding."""
    k = 2 * int(4.0 * sigma + 0.5) + 1
    return tv_blur(x, [k, k], [sigma, sigma])


def coreset_size(n: int, ratio: float) -> int:
    return max(1, math.floor(n * ratio))
