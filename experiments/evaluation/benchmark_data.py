"""What a benchmark's own measures read beyond maps and masks, gathered at the model's resolution.

MVTec LOCO's sPRO reads each test image's ground-truth regions (one PNG each, its pixel value naming the
defect type of ``defects_config.json``) with their saturation areas; MVTec AD 2's SegF1 reads a threshold
set on the validation normals' maps.  Metrics are computed at the model's resolution (docs/protocol.md
§7): each region is resized as the masks are, and its saturation area (in the image's pixels) scaled by
the resize's area ratio, kept within [1, the region's area there].  A region that vanishes at that
resolution (a few pixels of a large image) is left out, and said.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ad_core.data.io import IMAGE_SUFFIXES, image_size, read_mask_channel
from ad_core.data.preprocess import Preprocessor
from ad_core.data.samples import CategoryFiles, Sample
from ad_core.errors import DatasetError
from ad_core.metrics.registry import BenchmarkData

log = logging.getLogger("ad-repro")


def benchmark_data(files: CategoryFiles, samples: Sequence[Sample], preprocess: Preprocessor) -> BenchmarkData:
    """The benchmark data of a category's test ``samples``: its declared measures, and its regions where its
    layout gives a defects configuration (None otherwise)."""
    measures = files.capabilities.measures
    if files.defects_config is None or not measures:
        return BenchmarkData(measures)
    from ad_core.metrics.spro import read_defects_config

    return BenchmarkData(measures, regions_at_model_resolution(samples, read_defects_config(files.defects_config),
                                                               preprocess))


def regions_at_model_resolution(samples: Sequence[Sample], defects: dict, preprocess: Preprocessor
                                ) -> list[list[tuple[np.ndarray, float]]]:
    """Per sample its regions (mask (S, S) bool, saturation pixels) at the model's resolution; [] for an image
    without a mask folder (a normal one)."""
    from ad_core.metrics.spro import region_of_channel

    out, vanished = [], []
    for sample in samples:
        regions: list[tuple[np.ndarray, float]] = []
        if sample.mask is not None and sample.mask.is_dir():
            size = image_size(sample.path)
            scale = preprocess.area_scale(size)
            for part in sorted(p for p in sample.mask.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                try:
                    region = region_of_channel(read_mask_channel(part, size), defects)
                except ValueError as exc:
                    raise DatasetError(f"{part}: {exc}; fix the mask or the category's defects_config.json") from None
                small = preprocess.resize_mask(region.mask)
                area = int(small.sum())
                if area == 0:
                    vanished.append(f"{sample.relpath} ({part.name})")
                    continue
                regions.append((small, float(min(max(region.saturation * scale, 1.0), area))))
        out.append(regions)
    if vanished:
        log.warning("sPRO: %d region(s) vanish at the model's resolution and are left out: %s%s", len(vanished),
                    ", ".join(vanished[:3]), " ..." if len(vanished) > 3 else "")
    return out


def segmentation_threshold(maps: np.ndarray, labels: np.ndarray) -> float:
    """SegF1's threshold from a validation split's maps (N, S, S): its normal images' pixels only."""
    from ad_core.metrics.segmentation import validation_threshold

    return validation_threshold(np.asarray(maps)[np.asarray(labels) == 0])
