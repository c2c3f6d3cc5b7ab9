"""The embedded default dataset: valid MVTec layout, deterministic, exact defect masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ad_core.data.embedded import CATEGORIES, DEFECTS, SOURCES, EmbeddedSpec, _normal_image, make_embedded_dataset
from ad_core.data.io import read_image, read_mask
from ad_core.data.layouts.mvtec import discover_category
from ad_core.data.splits import make_splits
from ad_core.seeding import rng_for

pytestmark = pytest.mark.fast

SPEC = EmbeddedSpec(n_train_good=5, n_test_good=2, n_per_defect=1, size=96)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return make_embedded_dataset(tmp_path_factory.mktemp("emb"), SPEC)


def test_three_kinds_of_category():
    kinds = {c: (SOURCES[c][1], SOURCES[c][0]().ndim == 2) for c in CATEGORIES}  # (kind, grayscale)
    assert ("object", False) in kinds.values()
    assert any(kind == "texture" for kind, _ in kinds.values())
    assert any(gray for _, gray in kinds.values())
    assert len(CATEGORIES) >= 3 and len(DEFECTS) == 5


@pytest.mark.parametrize("category", CATEGORIES)
def test_layout_is_valid_and_complete(embedded, category):
    files = discover_category(embedded, category)
    assert len(files.train_good) == 5 and len(files.test_good) == 2
    assert files.defects == sorted(DEFECTS) and files.has_masks
    img = Image.open(files.train_good[0].path)
    assert img.size == (96, 96) and img.mode == ("L" if SOURCES[category][0]().ndim == 2 else "RGB")


@pytest.mark.parametrize("category", CATEGORIES)
def test_defects_are_exactly_where_the_masks_are(embedded, category):
    files = discover_category(embedded, category)
    for sample in files.test_anomalous:
        image = read_image(sample.path).astype(int)
        mask = read_mask(sample.mask, image.shape[:2])
        assert 0 < mask.sum() < 0.5 * mask.size
        folder, name = sample.relpath.rsplit("/", 1)
        rng = rng_for(SPEC.seed, "embedded", category, folder, name)
        clean = (_normal_image(category, rng, SPEC.size) * 255).round().astype(int)
        changed = np.abs(image - clean)
        changed = changed.max(axis=-1) if changed.ndim == 3 else changed
        assert (changed[~mask] == 0).all(), sample.relpath  # nothing outside the mask changed
        assert changed[mask].mean() > 10, sample.relpath  # and the defect is visible


def test_normal_images_vary(embedded):
    files = discover_category(embedded, "coffee")
    a, b = (read_image(s.path).astype(float) for s in files.train_good[:2])
    assert 2 < np.abs(a - b).mean() < 80


def test_generation_is_deterministic_and_reused(embedded, tmp_path):
    again = make_embedded_dataset(tmp_path / "again", SPEC)
    for path in sorted(embedded.rglob("*.png")):
        assert path.read_bytes() == (again / path.relative_to(embedded)).read_bytes()
    marker = embedded / "embedded_dataset.json"
    before = marker.stat().st_mtime_ns
    make_embedded_dataset(embedded, SPEC)
    assert marker.stat().st_mtime_ns == before


def test_default_size_supports_the_study_splits(embedded):
    spec = EmbeddedSpec()
    assert spec.n_per_defect * len(DEFECTS) >= 4 and spec.n_train_good >= 2
    splits = make_splits(discover_category(embedded, "brick"))
    assert splits.counts()["val_anomalous"] == 1  # floor(0.3 * 5)
