"""ELPV solar-cell images (PyPI ``elpv-dataset``) as an image-level-only MVTec-layout dataset.

2,624 real 300x300 8-bit electroluminescence images of solar cells, labelled with a defect
probability (0, 1/3, 2/3, 1) and a cell type (mono / poly); no pixel masks.  Categories
``elpv_mono`` and ``elpv_poly``.  How the study's folders map onto one pool of normal cells:

- the p=0 cells of a type are one pool; a seeded permutation (numpy ``default_rng(seed)``)
  of their sorted file names puts ``round(0.2 * n)`` into ``test/good`` (the study's test
  normals) and the rest into ``train/good``, which the study's §2 rule then splits 80/20
  into train and validation normals;
- p=1 cells are the anomalies, ``test/defect/`` (30% validation, 70% test by §2);
- p=1/3 and p=2/3 cells go to ``uncertain/p033`` and ``uncertain/p067``: never trained on,
  never in the study's metrics, scored in a separate "uncertain" evaluation;
- there is no ``ground_truth/`` folder: pixel metrics are absent, with the reason.

Data licence CC BY-NC-SA 4.0 (the package's authors); the files are copied, not modified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ad_core import SEED
from ad_core.data.io import atomic_write_bytes, folder_digests, write_json
from ad_core.data.records import intact_copy
from ad_core.errors import DatasetError

CATEGORIES = ("elpv_mono", "elpv_poly")
TEST_NORMAL_FRACTION = 0.2
UNCERTAIN_GROUPS = {1 / 3: "p033", 2 / 3: "p067"}
MARKER = "elpv_dataset.json"


def elpv_labels() -> list[tuple[Path, float, str]]:
    """(image path, defect probability, cell type) of every cell in the installed package."""
    try:
        import elpv_dataset
    except ImportError as exc:
        raise DatasetError(
            "The ELPV dataset is an optional extra: pip install 'ad-repro[elpv]' (PyPI package "
            "elpv-dataset, 90 MB; data licence CC BY-NC-SA 4.0)."
        ) from exc
    base = Path(elpv_dataset.__file__).parent / "data"
    rows = []
    for line in (base / "labels.csv").read_text().splitlines():
        if line.strip():
            rel, prob, kind = line.split()
            rows.append((base / rel, float(prob), kind))
    return rows


def make_elpv_dataset(root: str | Path, seed: int = SEED, categories: tuple[str, ...] = CATEGORIES,
                      stamp: object = None) -> Path:
    """Write the MVTec-layout copy under ``root`` (kept if complete for the same seed and ``stamp``)."""
    root = Path(root)
    marker = root / MARKER
    if intact_copy(root, marker, lambda r: (r.get("seed"), r.get("categories"), r.get("stamp")) == (
            seed, list(categories), stamp), "ELPV copy"):
        return root
    rows = elpv_labels()
    counts: dict[str, dict[str, int]] = {}
    for category in categories:
        kind = category.removeprefix("elpv_")
        mine = sorted((p, prob) for p, prob, k in rows if k == kind)
        if not mine:
            raise DatasetError(f"No ELPV cells of type {kind!r}; categories are {CATEGORIES}.")
        normal = [p for p, prob in mine if prob == 0.0]
        order = np.random.default_rng(seed).permutation(len(normal))
        n_test = round(TEST_NORMAL_FRACTION * len(normal))
        placed: list[tuple[Path, str]] = [(normal[i], "test/good") for i in order[:n_test]]
        placed += [(normal[i], "train/good") for i in order[n_test:]]
        placed += [(p, "test/defect") for p, prob in mine if prob == 1.0]
        for level, group in UNCERTAIN_GROUPS.items():
            placed += [(p, f"uncertain/{group}") for p, prob in mine if np.isclose(prob, level)]
        for src, folder in placed:
            atomic_write_bytes(root / category / folder / src.name, src.read_bytes())
        counts[category] = {f: sum(1 for _, g in placed if g == f) for f in sorted({g for _, g in placed})}
    write_json(marker, {"seed": seed, "categories": list(categories), "stamp": stamp, "counts": counts,
                        "test_normal_fraction": TEST_NORMAL_FRACTION, "files": folder_digests(root)})
    return root
