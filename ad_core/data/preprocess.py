"""The study's preprocessing (docs/protocol.md §1) with torchvision transforms v2.

Image: resize to 224x224 (bilinear, antialiased as PIL's resize is), scale to [0, 1],
ImageNet normalisation; grayscale repeated to 3 channels.  Mask: the same resize with
nearest-neighbour interpolation (v2 does that for ``tv_tensors.Mask``), binarised at 0.5;
a normal image gets an all-zero mask.

The papers' protocol (``resize`` set, docs/protocol.md §12): the shorter side resized to
``resize`` (256), aspect kept, then a centre crop of ``size`` (224), image and mask alike,
as torchvision's ``Resize(256)`` + ``CenterCrop(224)`` in the PatchCore and PaDiM code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224


def to_chw_uint8(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8 array -> (3, H, W) uint8 tensor (gray repeated)."""
    t = torch.tensor(image)  # a copy: decoded PIL arrays are read-only
    if t.ndim == 2:
        t = t.unsqueeze(0).expand(3, -1, -1)
    else:
        t = t.permute(2, 0, 1)
    return t.contiguous()


@dataclass(frozen=True)
class Preprocessor:
    """Callable turning (image array, mask array | None) into model-ready tensors.

    Returns ``image`` float32 (3, size, size), normalised, and ``mask`` bool (size, size).
    ``resize``: None resizes straight to size x size (the study); an int resizes the shorter
    side to it (aspect kept) and centre-crops size x size (the papers: 256 then 224).
    """

    size: int = IMAGE_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.resize is not None and self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be >= the crop size ({self.size})")

    def _geometry(self, interpolation: v2.InterpolationMode) -> list[v2.Transform]:
        """Resize (then centre crop, with ``resize``): the same steps for images and masks."""
        target = (self.size, self.size) if self.resize is None else self.resize  # int: the shorter side
        steps: list[v2.Transform] = [v2.Resize(target, interpolation=interpolation, antialias=True)]
        return steps if self.resize is None else [*steps, v2.CenterCrop(self.size)]

    def _transform(self) -> v2.Compose:
        return v2.Compose(
            [
                *self._geometry(v2.InterpolationMode.BILINEAR),
                v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.float32,
                            "others": None}, scale=True),
                v2.Normalize(mean=list(self.mean), std=list(self.std)),
            ]
        )

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img = tv_tensors.Image(to_chw_uint8(image))
        if mask is None:
            mask = np.zeros(image.shape[:2], dtype=bool)
        m = tv_tensors.Mask(torch.from_numpy(mask.astype(np.float32))[None])
        out_img, out_mask = self._transform()(img, m)
        return out_img.as_subclass(torch.Tensor), (out_mask[0] >= 0.5).as_subclass(torch.Tensor)

    def area_scale(self, image_size: tuple[int, int]) -> float:
        """How many model-resolution pixels one pixel of an (H, W) image becomes (the resize's area ratio,
        before any crop): a pixel count of the image, e.g. a saturation area, times this."""
        h, w = image_size
        if self.resize is None:
            return self.size * self.size / (h * w)
        return (self.resize / min(h, w)) ** 2

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        """Mask (H, W) -> bool (size, size), nearest-neighbour, as metrics need."""
        m = tv_tensors.Mask(torch.from_numpy(mask.astype(np.float32))[None])
        out = v2.Compose(self._geometry(v2.InterpolationMode.NEAREST))(m)
        return (out[0] >= 0.5).numpy()
