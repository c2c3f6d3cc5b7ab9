"""The ELPV adapter: real solar-cell images as an image-level-only MVTec-layout dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ad_core.data.elpv import make_elpv_dataset
from ad_core.data.io import read_image
from ad_core.data.layouts.mvtec import discover_category
from ad_core.data.splits import make_splits

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def elpv(tmp_path_factory):
    return make_elpv_dataset(tmp_path_factory.mktemp("elpv"), categories=("elpv_mono",))


def test_pools_map_onto_the_mvtec_layout(elpv):
    counts = json.loads((elpv / "elpv_dataset.json").read_text())["counts"]["elpv_mono"]
    # 588 p=0 cells: 20% test normals, the rest train/good; 313 p=1; 117 p=1/3; 56 p=2/3
    assert counts == {"test/defect": 313, "test/good": 118, "train/good": 470,
                      "uncertain/p033": 117, "uncertain/p067": 56}
    files = discover_category(elpv, "elpv_mono")
    assert not files.has_masks and files.defects == ["defect"]
    assert len(files.uncertain) == 173 and {s.defect for s in files.uncertain} == {"p033", "p067"}
    splits = make_splits(files)
    assert splits.counts() == {"train": 376, "val_normal": 94, "val_anomalous": 93,
                               "test_normal": 118, "test_anomalous": 220}
    uncertain = {s.relpath for s in files.uncertain}
    assert not uncertain & set(splits.train + splits.val() + splits.test())  # never in the study's splits


def test_images_are_real_300px_grayscale_cells(elpv):
    files = discover_category(elpv, "elpv_mono")
    img = read_image(files.train_good[0].path)
    assert img.shape == (300, 300) and img.dtype == np.uint8 and img.std() > 5


def test_copy_is_kept_when_complete(elpv):
    marker = elpv / "elpv_dataset.json"
    before = marker.stat().st_mtime_ns
    make_elpv_dataset(elpv, categories=("elpv_mono",))
    assert marker.stat().st_mtime_ns == before
