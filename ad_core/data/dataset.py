"""A torch ``Dataset`` over a list of samples: decoded, checked, preprocessed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from ad_core.data.io import image_size, read_image, read_mask
from ad_core.data.layout import Sample
from ad_core.data.preprocess import Preprocessor


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Decoded image (H, W[, 3]) uint8 and its bool mask (H, W) (zeros for normal images)."""
    image = read_image(sample.path)
    if sample.mask is None:
        return image, np.zeros(image.shape[:2], dtype=bool)
    return image, read_mask(sample.mask, image.shape[:2])


class ImageSet(Dataset):
    """Items: ``{"image": (3,S,S) float32, "mask": (S,S) bool, "label": int, "relpath": str}``."""

    def __init__(self, samples: Sequence[Sample], preprocess: Preprocessor | None = None):
        if len(samples) == 0:
            raise ValueError("ImageSet got an empty list of samples; check the split.")
        self.samples = list(samples)
        self.preprocess = preprocess or Preprocessor()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, object]:
        sample = self.samples[i]
        image, mask = load_pair(sample)
        x, m = self.preprocess(image, mask)
        return {"image": x, "mask": m, "label": sample.label, "relpath": sample.relpath}

    def masks(self) -> np.ndarray:
        """All masks at model resolution, bool (N, S, S), for pixel metrics (no image decode)."""
        size = self.preprocess.size
        out = np.zeros((len(self), size, size), dtype=bool)
        for i, sample in enumerate(self.samples):
            if sample.mask is not None:
                out[i] = self.preprocess.resize_mask(read_mask(sample.mask, image_size(sample.path)))
        return out
