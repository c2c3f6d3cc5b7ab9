"""Discovery of MVTec-layout folders and the bad inputs a user meets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ad_core.data.dataset import ImageSet, load_pair
from ad_core.data.io import read_image, read_mask, write_image
from ad_core.data.layouts.mvtec import discover_category, list_categories
from ad_core.data.preprocess import Preprocessor
from ad_core.errors import DatasetError

pytestmark = pytest.mark.fast


def test_discovery_lists_every_file_sorted_with_masks(make_category):
    cat = make_category(defects={"crack": 3, "dent": 2})
    files = discover_category(cat.parent, cat.name)
    assert [s.relpath for s in files.train_good] == [f"train/good/{i:03d}.png" for i in range(5)]
    assert [s.relpath for s in files.test_good] == ["test/good/000.png", "test/good/001.png"]
    assert [s.relpath for s in files.test_anomalous][:3] == [f"test/crack/{i:03d}.png" for i in range(3)]
    assert files.defects == ["crack", "dent"]
    assert all(s.label == 1 and s.mask is not None for s in files.test_anomalous)
    assert all(s.mask.name == Path(s.relpath).stem + "_mask.png" for s in files.test_anomalous)
    assert all(s.label == 0 and s.mask is None for s in files.train_good + files.test_good)
    assert list_categories(cat.parent) == [cat.name]


def test_non_image_files_are_ignored(make_category):
    cat = make_category()
    (cat / "train" / "good" / ".DS_Store").write_text("x")
    (cat / "train" / "good" / "notes.txt").write_text("x")
    assert len(discover_category(cat.parent, cat.name).train_good) == 5


def test_missing_category_names_the_ones_found(make_category):
    cat = make_category(name="hazelnut")
    with pytest.raises(DatasetError, match=r"carpet.*not found.*hazelnut"):
        discover_category(cat.parent, "carpet")


def test_missing_root():
    with pytest.raises(DatasetError, match="does not exist"):
        list_categories("/nonexistent/mvtec")


@pytest.mark.parametrize("sub", ["train/good", "test/good"])
def test_missing_split_folder(make_category, sub):
    cat = make_category()
    for f in (cat / sub).iterdir():
        f.unlink()
    (cat / sub).rmdir()
    with pytest.raises(DatasetError, match=f"{sub} is missing"):
        discover_category(cat.parent, cat.name)


def test_empty_split_folder(make_category):
    cat = make_category()
    for f in (cat / "train" / "good").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="holds no images.*empty"):
        discover_category(cat.parent, cat.name)


def test_anomalous_image_without_mask_names_the_expected_mask(make_category):
    cat = make_category()
    (cat / "ground_truth" / "dent" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"test/dent/001.png has no mask.*001_mask.png"):
        discover_category(cat.parent, cat.name)


def test_no_ground_truth_folder_is_image_level_only_and_says_so(make_category, caplog):
    cat = make_category(masks=False)
    with caplog.at_level(logging.WARNING):
        files = discover_category(cat.parent, cat.name)
    assert not files.has_masks
    assert all(s.mask is None for s in files.test_anomalous)
    assert "image-level-only" in caplog.text and "forgot the masks" in caplog.text
    image, mask = load_pair(files.test_anomalous[0])
    assert not mask.any()


def test_mask_of_another_size(make_category):
    cat = make_category()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(cat / "ground_truth" / "crack" / "000_mask.png")
    files = discover_category(cat.parent, cat.name)
    with pytest.raises(DatasetError, match=r"000_mask.png is 16x16.*image is 32x32"):
        load_pair(files.test_anomalous[0])


def test_non_binary_mask(make_category):
    cat = make_category()
    m = np.zeros((32, 32), np.uint8)
    m[:4] = 128
    m[4:8] = 255
    Image.fromarray(m).save(cat / "ground_truth" / "crack" / "000_mask.png")
    with pytest.raises(DatasetError, match="not binary: 3 distinct values"):
        read_mask(cat / "ground_truth" / "crack" / "000_mask.png")


@pytest.mark.parametrize("value", [1, 255])
def test_binary_mask_in_0_1_or_0_255(tmp_path, value):
    m = np.zeros((8, 8), np.uint8)
    m[2:4, 2:5] = value
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png", (8, 8))
    assert out.dtype == bool and out.sum() == 6


def test_corrupt_and_truncated_images(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"junk.png.*corrupt"):
        read_image(tmp_path / "junk.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cut.png"):
        read_image(tmp_path / "cut.png")


def test_grayscale_stays_2d_and_becomes_3_channels_in_preprocessing(tmp_path):
    Image.fromarray(np.full((20, 30), 100, np.uint8)).save(tmp_path / "g.png")
    arr = read_image(tmp_path / "g.png")
    assert arr.shape == (20, 30)


def test_16_bit_is_converted_to_8_bit(tmp_path):
    arr16 = np.array([[0, 257, 65535]], dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "i16.png")
    assert read_image(tmp_path / "i16.png").tolist() == [[0, 1, 255]]


def test_rgba_opaque_is_converted_and_transparent_is_refused(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    out = read_image(tmp_path / "opaque.png")
    assert out.shape == (4, 4, 3) and (out[..., 0] == 200).all()
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    with pytest.raises(DatasetError, match=r"transparent.png has transparent pixels \(1 of 16\)"):
        read_image(tmp_path / "transparent.png")


def test_image_set_items_are_model_ready(make_category):
    cat = make_category(gray=True)
    files = discover_category(cat.parent, cat.name)
    ds = ImageSet(files.test_good + files.test_anomalous)
    item = ds[len(files.test_good)]
    assert item["image"].shape == (3, 224, 224) and item["mask"].shape == (224, 224)
    assert item["label"] == 1 and item["mask"].any()
    assert not ds[0]["mask"].any()
    masks = ds.masks()
    assert masks.shape == (len(ds), 224, 224)
    assert np.array_equal(masks[len(files.test_good)], item["mask"].numpy())
    with pytest.raises(ValueError, match="empty"):
        ImageSet([])


def test_all_zero_mask_of_an_anomalous_image_warns_naming_the_file(make_category, caplog):
    cat = make_category(name="widget", defects={"crack": 1})
    mask_path = cat / "ground_truth" / "crack" / "000_mask.png"
    write_image(mask_path, np.zeros((32, 32), dtype=bool))
    files = discover_category(cat.parent, "widget")
    with caplog.at_level("WARNING"):
        masks = ImageSet(files.test_anomalous).masks()
    assert not masks.any()
    assert str(mask_path) in caplog.text and "all zero" in caplog.text


def test_tiny_images_warn_once_that_they_are_upsampled(make_category, caplog):
    cat = make_category(name="widget", size=(16, 16))
    files = discover_category(cat.parent, "widget")
    images = ImageSet(files.train_good)
    with caplog.at_level("WARNING"):
        images[0], images[1]
    assert caplog.text.count("far below the model's 224x224") == 1 and "16x16" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        ImageSet(files.train_good, Preprocessor(size=48))[0]  # 16 * 4 >= 48: no warning
    assert "far below" not in caplog.text
