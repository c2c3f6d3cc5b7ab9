"""A synthetic MVTec-layout dataset of any size, for measuring cost where the real data is absent.

Given per-category image counts (e.g. MVTec AD's 15 categories, ``experiments/published/
mvtec_ad_counts.json``), it writes ``<category>/train/good``, ``test/good``, ``test/<defect>`` and
``ground_truth/<defect>/*_mask.png`` exactly as MVTec AD lays them out, so the normal code path
(splits, preprocessing, backbone, caches, models, metrics) reads it unchanged.  Each category is
crops of one photograph that ships inside scikit-image's wheel (no download) with the embedded
dataset's acquisition jitter and its five painted defect types (``ad_core.data.embedded``).
The numbers it gives are not MVTec AD's; its sizes, and therefore its costs, are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from skimage import data as skdata
from tqdm.auto import tqdm

from ad_core import SEED
from ad_core.data.embedded import DEFECTS, normal_from_source, paint_defect
from ad_core.data.io import folder_digests, write_image, write_json
from ad_core.data.records import intact_copy
from ad_core.seeding import rng_for

MARKER = "synthetic_dataset.json"
# photographs of at least 300 px a side in scikit-image 0.26's wheel, one per category (cycled beyond 15)
PHOTOGRAPHS = ("brick", "grass", "gravel", "immunohistochemistry", "hubble_deep_field", "retina", "coffee",
               "astronaut", "chelsea", "rocket", "coins", "camera", "moon", "clock", "cell")


def _photograph(index: int) -> np.ndarray:
    return getattr(skdata, PHOTOGRAPHS[index % len(PHOTOGRAPHS)])().astype(np.float32) / 255.0


def image_jobs(counts: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """(folder, file name, index) of every image of one category: ``counts`` has train_good, test_good
    and test_defect; the defective images cycle through ``DEFECTS`` (MVTec AD's defect types vary per
    category; only their total matters to the cost)."""
    jobs = [("train/good", f"{i:03d}.png", i) for i in range(counts["train_good"])]
    jobs += [("test/good", f"{i:03d}.png", i) for i in range(counts["test_good"])]
    per_type = [0] * len(DEFECTS)
    for j in range(counts["test_defect"]):
        t = j % len(DEFECTS)
        jobs.append((f"test/{DEFECTS[t]}", f"{per_type[t]:03d}.png", per_type[t]))
        per_type[t] += 1
    return jobs


def write_synthetic_mvtec(root: str | Path, counts: Mapping[str, Mapping[str, int]], size: int = 256,
                          seed: int = SEED, progress: bool = False) -> Path:
    """Write the dataset under ``root`` (category -> {train_good, test_good, test_defect}) and return ``root``.

    Every image is drawn from a generator seeded by (seed, category, folder, name): the same PNGs on
    every machine.  A complete earlier copy with the same record whose files are the ones it wrote is
    kept (the marker, written last, holds their digests); one with an altered file is rebuilt, saying which.
    """
    root = Path(root)
    record = {"counts": {c: dict(v) for c, v in counts.items()}, "size": size, "seed": seed,
              "photographs": list(PHOTOGRAPHS), "defects": list(DEFECTS)}
    marker = root / MARKER
    if intact_copy(root, marker, lambda stored: {k: v for k, v in stored.items() if k != "files"} == record,
                   "synthetic dataset"):
        return root
    total = sum(sum(v.values()) for v in counts.values())
    with tqdm(total=total, desc="synthetic images", disable=not progress) as bar:
        for index, (category, n) in enumerate(counts.items()):
            src = _photograph(index)
            for folder, name, i in image_jobs(n):
                rng = rng_for(seed, "synthetic", category, folder, name)
                img = normal_from_source(src, "texture", rng, size)
                defect = folder.split("/")[1]
                if defect != "good":
                    img, mask = paint_defect(img, defect, "texture", rng)
                    write_image(root / category / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
                write_image(root / category / folder / name, (img * 255.0).round().astype(np.uint8))
                bar.update()
    write_json(marker, {**record, "files": folder_digests(root)})  # what a reuse is checked by
    return root
