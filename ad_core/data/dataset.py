"""A torch ``Dataset`` over a list of samples: decoded, checked, preprocessed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from ad_core.data.io import image_size, read_image, read_mask
from ad_core.data.preprocess import Preprocessor
from ad_core.data.samples import Sample

log = logging.getLogger(__name__)
SMALL_FACTOR = 4  # an image whose shorter side is below model size / 4 is upsampled 4x or more


def check_mask_not_empty(mask: np.ndarray, sample: Sample) -> None:
    """Warn when an anomalous image's mask marks no pixel (it still counts at image level)."""
    if sample.label == 1 and sample.mask is not None and not mask.any():
        log.warning(
            "Mask %s of the anomalous image %s is all zero: PRO gets no region from it and pixel "
            "AUROC counts its pixels as normal. Draw the defect in the mask, or move the image to "
            "test/good if it has none.", sample.mask, sample.path)


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decoded image (H, W[, 3]) uint8 and its bool mask (H, W) (zeros for normal images)."""
    image = read_image(sample.path, sample.bits)
    if sample.mask is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    return image, read_mask(sample.mask, image.shape[:2], sample.mask_values)


class ImageSet(Dataset):
    """Items: ``{"image": (3,S,S) float32, "mask": (S,S) bool, "label": int, "relpath": str}``."""

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocessor | None = None):
        if len(samples) == 0:
            raise ValueError("ImageSet got an empty list of samples; check the split.")
        self.samples = list(samples)
        self.preprocess = preprocess or Preprocessor()
        self._warned_small = False

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, object]:
        sample = self.samples[i]
        image, mask = load_pair(sample)
        if not self._warned_small and min(image.shape[:2]) * SMALL_FACTOR < self.preprocess.size:
            self._warned_small = True  # once per set: a folder of thumbnails would repeat it per image
            log.warning(
                "Image %s is %dx%d, far below the model's %dx%d: it is upsampled more than %dx, so its "
                "features describe interpolation blur more than the object (this set may hold more such "
                "images). Use the original resolution if you have it.", sample.path, image.shape[1],
                image.shape[0], self.preprocess.size, self.preprocess.size, SMALL_FACTOR)
        x, m = self.preprocess(image, mask)
        return {"image": x, "mask": m, "label": sample.label, "relpath": sample.relpath}

    def masks(self) -> np.ndarray:
        """All masks at model resolution, bool (N, S, S), for pixel metrics (no image decode)."""
        size = self.preprocess.size
        out = np.zeros((len(self), size, size), dtype=bool)
        for i, sample in enumerate(self.samples):
            if sample.mask is not None:
                mask = read_mask(sample.mask, image_size(sample.path), sample.mask_values)
                check_mask_not_empty(mask, sample)
                out[i] = self.preprocess.resize_mask(mask)
        return out
