"""VisA in all its forms (issue item 4): the converted tree spot-diff's ``prepare_data.py`` writes
(``1cls/<object>/...``, masks named as their images, 0/255 in one or three channels) detected as VisA, or
read by MVTec AD's reader where its folders are not VisA's objects, saying so; raw class-id masks read as
binary; a missing mask's error naming what it found; and, without VisA's split file, the hold-out rule
recorded in the splits file, provenance.json and report.md."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ad_core.data import layouts
from ad_core.data.dataset import load_pair
from ad_core.data.io import read_mask
from ad_core.data.layouts import visa, visa_converted
from ad_core.data.splits import make_splits, save_splits
from ad_core.errors import DatasetError
from experiments.cli import main
from experiments.readers import read_splits
from tests.test_layouts import image, mask, write_visa

pytestmark = pytest.mark.fast

SIZE = (40, 48)  # H, W
REGION = (slice(5, 15), slice(8, 20))


def region(size: tuple[int, int] = SIZE) -> np.ndarray:
    m = np.zeros(size, bool)
    m[REGION] = True
    return m


def encoded(kind: str, size: tuple[int, int] = SIZE) -> Image.Image:
    """The defect region of ``region()`` in one of the encodings VisA's masks come in."""
    ids = np.zeros(size, np.uint8)
    if kind == "gray255":  # spot-diff's prepare_data.py: the ids set to 255
        ids[REGION] = 255
        return Image.fromarray(ids)
    if kind == "rgb255":  # anomalib's conversion: cv2 writes three channels
        ids[REGION] = 255
        return Image.fromarray(np.stack([ids] * 3, axis=-1))
    if kind == "gray01":
        ids[REGION] = 1
        return Image.fromarray(ids)
    ids[REGION] = 2  # class ids: two defect classes in one mask (VisA's raw Data/Masks/Anomaly)
    ids[REGION[0], 8:11] = 5
    if kind == "ids":
        return Image.fromarray(ids)
    if kind == "palette":  # the ids as a palette image whose index 0 is not black: the ids are the indices
        img = Image.frombytes("P", (size[1], size[0]), ids.tobytes())
        img.putpalette([255, 255, 255] + [0, 0, 0] * 255)
        return img
    raise ValueError(kind)


KINDS = ("gray255", "rgb255", "gray01", "ids", "palette")


def write_converted(root: Path, objects: tuple[str, ...] = ("candle", "pcb1"), split: str | None = "1cls",
                    kinds: tuple[str, ...] = ("gray255", "rgb255")) -> Path:
    """spot-diff's converted tree in miniature: ``<root>/<split>/<object>/train/good/*.JPG``, ``test/good``,
    ``test/bad`` and ``ground_truth/bad/<stem>.png`` (no ``_mask``), the masks in ``kinds`` in turn; returns
    the folder that holds the objects."""
    base = root / split if split else root
    for obj in objects:
        for i in range(10):
            image(base / obj / "train" / "good" / f"{i:04d}.JPG")
        for i in range(10, 12):
            image(base / obj / "test" / "good" / f"{i:04d}.JPG")
        for i in range(4):
            image(base / obj / "test" / "bad" / f"{i:03d}.JPG")
            path = base / obj / "ground_truth" / "bad" / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            encoded(kinds[i % len(kinds)]).save(path)
    return base


# -- the converted form -----------------------------------------------------------------------------
@pytest.mark.parametrize("nested", [True, False])
def test_the_converted_form_is_detected_as_visa_with_its_masks_named_as_their_images(tmp_path, nested, caplog):
    base = write_converted(tmp_path / "VisA_pytorch")
    root = tmp_path / "VisA_pytorch" if nested else base  # --data at the save folder or at its 1cls/
    layout = layouts.detect(root)
    assert layout.name == "visa_converted" and layout.capabilities.class_id_masks
    assert layouts.categories(root, layout) == ["candle", "pcb1"]
    with caplog.at_level(logging.WARNING):
        files = layout.discover(root, "candle")
    assert files.path == base / "candle" and files.layout == "visa_converted"
    assert [s.relpath for s in files.train_good][:2] == ["train/good/0000.JPG", "train/good/0001.JPG"]
    assert len(files.train_good) == 10 and len(files.test_good) == 2 and files.defects == ["bad"]
    assert [s.mask.name for s in files.test_anomalous] == ["000.png", "001.png", "002.png", "003.png"]
    assert all(s.mask_values == "labels" for s in files.test_anomalous)
    for s in files.test_anomalous:  # one-channel and three-channel 0/255 read as the same mask
        assert (load_pair(s)[1] == region()).all()
    assert "named as their image" not in caplog.text, "the layout's own convention needs no word"
    assert files.holdout is None and files.split_source is None  # its folders are the split: nothing held out
    splits = make_splits(files)
    assert splits.holdout is None and len(splits.train) == 8 and splits.test_normal == [
        "test/good/0010.JPG", "test/good/0011.JPG"]


def test_the_converted_form_under_other_names_is_read_by_mvtec_s_reader_saying_so(tmp_path, caplog):
    root = write_converted(tmp_path / "mine", objects=("bolt", "nut"), split=None)
    layout = layouts.detect(root)
    assert layout.name == "mvtec"
    with caplog.at_level(logging.WARNING):
        files = layout.discover(root, "bolt")
    lines = [r.getMessage() for r in caplog.records if "named as their image" in r.getMessage()]
    assert len(lines) == 1 and "4 mask(s)" in lines[0] and "ground_truth/bad/000.png" in lines[0]
    assert [s.mask.name for s in files.test_anomalous] == ["000.png", "001.png", "002.png", "003.png"]
    assert all(s.mask_values == "binary" for s in files.test_anomalous)  # MVTec AD's rule stays for MVTec AD
    assert all((load_pair(s)[1] == region()).all() for s in files.test_anomalous)
    forced = layouts.detect(root, "visa_converted")  # --layout reads objects of other names as VisA's
    assert layouts.categories(root, forced) == ["bolt", "nut"]
    assert forced.discover(root, "bolt").test_anomalous[0].mask_values == "labels"


@pytest.mark.parametrize("kind", KINDS)
def test_every_encoding_of_visa_s_masks_reads_as_the_same_binary_mask(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    encoded(kind).save(path)
    assert (read_mask(path, SIZE, "labels") == region()).all()  # VisA, raw or converted: any id is defect
    if kind in ("gray255", "rgb255", "gray01"):
        assert (read_mask(path, SIZE) == region()).all()  # MVTec AD's binary rule reads them alike
    elif kind == "ids":  # two ids in one mask: MVTec AD's rule refuses it, naming where class ids are read
        with pytest.raises(DatasetError, match=r"not binary: 3 distinct values \(0, 2, 5\).*Class-id masks .* "
                                               r"only by a layout that declares them \(VisA's\)"):
            read_mask(path, SIZE)


def test_raw_visa_masks_of_class_ids_read_as_binary_masks(tmp_path):
    root = write_visa(tmp_path / "visa")
    for i, kind in enumerate(("ids", "palette", "gray01")):
        encoded(kind).save(root / "candle" / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png")
    files = layouts.detect(root).discover(root, "candle")
    assert files.capabilities.class_id_masks
    for s in files.test_anomalous[:3]:
        assert s.mask_values == "labels" and (load_pair(s)[1] == region()).all()


def test_a_two_class_split_or_a_jpeg_mask_of_the_converted_form_is_one_line(tmp_path):
    base = write_converted(tmp_path / "v", objects=("candle",))
    image(base / "candle" / "train" / "bad" / "009.JPG")
    with pytest.raises(DatasetError, match=r"train/bad holds anomalous training images: a 2-class split") as exc:
        visa_converted.discover(tmp_path / "v", "candle")
    assert "\n" not in str(exc.value)
    (base / "candle" / "train" / "bad" / "009.JPG").unlink()
    (base / "candle" / "ground_truth" / "bad" / "001.png").rename(base / "candle" / "ground_truth" / "bad" / "001.jpg")
    with pytest.raises(DatasetError, match=r"001.jpg is a JPEG, whose compression noise would read as defect pixels; "
                                           r"use the PNG mask prepare_data.py writes \(001.png\)"):
        visa_converted.discover(tmp_path / "v", "candle")


def test_two_converted_splits_in_one_folder_are_one_line_asking_which(tmp_path):
    write_converted(tmp_path / "v", objects=("candle",), split="1cls")
    write_converted(tmp_path / "v", objects=("candle",), split="2cls_highshot")
    assert layouts.detect(tmp_path / "v").name == "visa_converted"
    with pytest.raises(DatasetError, match=r"holds 2 converted VisA splits \(1cls/, 2cls_highshot/\): point --data"):
        layouts.categories(tmp_path / "v", layouts.LAYOUTS["visa_converted"])


# -- a missing mask's error -------------------------------------------------------------------------
def test_a_missing_mask_names_what_was_found_and_never_to_drop_the_masks_there(tmp_path):
    base = write_converted(tmp_path / "v", objects=("candle",))
    gt = base / "candle" / "ground_truth" / "bad"
    (gt / "001.png").rename(gt / "001_gt.png")
    with pytest.raises(DatasetError) as exc:
        visa_converted.discover(tmp_path / "v", "candle")
    img = base / "candle" / "test" / "bad" / "001.JPG"
    assert str(exc.value) == (f"Anomalous image {img} has no mask: expected {gt / '001.png'} (or 001_mask.png, or a "
                              f"folder 001/ of masks); found 001_gt.png for 001 in {gt}. Add the mask.")
    gt.rename(gt.with_name("Bad"))  # the masks exist, under another folder's name
    with pytest.raises(DatasetError) as exc:
        visa_converted.discover(tmp_path / "v", "candle")
    assert str(exc.value).endswith(f"found nothing for 000: {gt} does not exist; ground_truth/ holds Bad/. Add the "
                                   "mask.")
    assert "remove" not in str(exc.value)


def test_a_mask_named_both_ways_or_claimed_by_two_images_is_refused(tmp_path):
    base = write_converted(tmp_path / "v", objects=("candle",))
    gt = base / "candle" / "ground_truth" / "bad"
    mask(gt / "002_mask.png")
    with pytest.raises(DatasetError, match=r"002_mask.png and 002.png are 2 masks of one image"):
        visa_converted.discover(tmp_path / "v", "candle")
    (gt / "002.png").unlink()  # 002_mask.png: 002's mask, and named as an image 002_mask.JPG
    image(base / "candle" / "test" / "bad" / "002_mask.JPG")
    with pytest.raises(DatasetError, match=r"002_mask.png would be the mask of two images, 002.JPG and 002_mask.JPG"):
        visa_converted.discover(tmp_path / "v", "candle")


def test_a_missing_raw_visa_mask_names_what_its_folder_holds(tmp_path):
    root = write_visa(tmp_path / "visa", split_file=False)
    masks = root / "candle" / "Data" / "Masks" / "Anomaly"
    (masks / "002.png").rename(masks / "002_mask.png")
    with pytest.raises(DatasetError, match=rf"002.JPG has no mask: expected {masks / '002.png'}; found "
                                           rf"002_mask.png for 002 in {masks}. Restore it from VisA's archive$"):
        visa.discover(root, "candle")


def test_prepare_exits_2_with_the_missing_mask_s_line(tmp_path, capsys):
    base = write_converted(tmp_path / "v", objects=("candle",))
    (base / "candle" / "ground_truth" / "bad" / "003.png").unlink()
    assert main(["prepare", "--data", str(tmp_path / "v"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "003.JPG has no mask" in err and "found nothing for 003" in err
    assert not (tmp_path / "out" / "splits").exists()


# -- the hold-out rule without VisA's split file ----------------------------------------------------
def test_without_the_split_file_the_hold_out_rule_is_recorded_in_the_splits_file(tmp_path, caplog):
    root = write_visa(tmp_path / "visa", split_file=False)
    with caplog.at_level(logging.WARNING):
        files = visa.discover(root, "candle")
    assert files.holdout == visa.HOLDOUT and visa.HOLDOUT in caplog.text
    assert [s.relpath for s in files.test_good] == ["test/good/0009.JPG"]  # the rule as stated: the 10th
    for protocol in ("study", "full_test"):
        splits = make_splits(files, protocol=protocol)
        path = tmp_path / f"{protocol}.json"
        save_splits(splits, path)
        written = json.loads(path.read_text())
        assert written["holdout"] == visa.HOLDOUT and written["rule"].startswith(
            f"train/good and test/good held out by the data's reader: {visa.HOLDOUT}; then ")
        assert read_splits(path) == splits
    official = make_splits(visa.discover(write_visa(tmp_path / "official"), "candle"))
    save_splits(official, tmp_path / "official.json")
    assert "holdout" not in json.loads((tmp_path / "official.json").read_text())  # no rule: no field


def test_a_splits_file_written_before_the_hold_out_field_is_redone_saying_why(tmp_path, caplog):
    from experiments.execution.prepare import plan_category

    root = write_visa(tmp_path / "visa", split_file=False)
    out = tmp_path / "out"
    older = make_splits(visa.discover(root, "candle")).model_copy(update={"holdout": None})
    save_splits(older, out / "splits" / "candle.json")
    assert "holdout" not in (out / "splits" / "candle.json").read_text()
    assert read_splits(out / "splits" / "candle.json") == older  # the older file reads
    with caplog.at_level(logging.WARNING):
        plan = plan_category(root, "candle", out, older.seed, layout="visa")
    assert plan.write_splits and plan.splits.holdout == visa.HOLDOUT
    assert "the rule recorded with the splits changed" in caplog.text


def test_the_report_states_each_hold_out_rule_once_with_its_categories(tmp_path):
    from experiments.reporting.report import holdout_lines

    assert holdout_lines(None) == [] and holdout_lines({}) == []
    lines = holdout_lines({"candle": visa.HOLDOUT, "pcb1": visa.HOLDOUT, "x": "another rule"})
    assert lines == [f"Test normals of candle, pcb1 held out by the data's reader, not by an official split: "
                     f"{visa.HOLDOUT}.", "",
                     "Test normals of x held out by the data's reader, not by an official split: another rule.", ""]


RUN = ["--scenarios", "clean", "--backbone", "efficientnet_lite0", "--weights", "package", "--no-progress",
       "--no-bootstrap", "--methods", "padim"]


@pytest.mark.slow
def test_a_run_reads_the_converted_form_and_records_the_hold_out_of_raw_visa_without_its_split_file(tmp_path, caplog):
    write_converted(tmp_path / "VisA_pytorch", kinds=("gray255", "rgb255", "ids"))
    out = tmp_path / "out-converted"
    with caplog.at_level(logging.INFO, logger="ad-repro"):
        assert main(["run", "--data", str(tmp_path / "VisA_pytorch"), "--out", str(out), *RUN]) == 0
    assert "layout visa_converted" in caplog.text
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["layout"] == "visa_converted" and "split_holdout" not in provenance
    result = json.loads((out / "results" / "clean.json").read_text())
    assert set(result["methods"]["padim"]["per_class"]) == {"candle", "pcb1"}
    assert all(pc["pixel_auroc"] is not None for pc in result["methods"]["padim"]["per_class"].values())
    assert "held out by the data's reader" not in (out / "report.md").read_text()
    assert "holdout" not in json.loads((out / "splits" / "candle.json").read_text())

    root = write_visa(tmp_path / "visa", split_file=False)
    out = tmp_path / "out-raw"
    assert main(["run", "--data", str(root), "--out", str(out), *RUN]) == 0
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["split_holdout"] == {"candle": visa.HOLDOUT, "pcb1": visa.HOLDOUT}
    for category in ("candle", "pcb1"):
        written = json.loads((out / "splits" / f"{category}.json").read_text())
        assert written["holdout"] == visa.HOLDOUT and visa.HOLDOUT in written["rule"]
    report = (out / "report.md").read_text()
    assert f"Test normals of candle, pcb1 held out by the data's reader, not by an official split: {visa.HOLDOUT}." \
        in report


# -- fuzzing the converted form's reader ------------------------------------------------------------
EXAMPLES = 40 if settings.default.max_examples <= 100 else settings.default.max_examples  # the deep profile's
STEM = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters=" ._-#()+'"), min_size=1,
               max_size=8)
# names that meet: an image and its mask, x and x_mask, a stem that pathlib and PIL read apart
NAME = st.sampled_from(["0", "0_mask", "0_mask_mask", "a.b", ".", "A", "a"]) | STEM | STEM.map(lambda s: f"{s}_mask")


@pytest.mark.faults
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(images=st.sets(NAME, max_size=5), masks=st.dictionaries(NAME, st.sampled_from(["named", "suffixed"]),
                                                               max_size=6),
       kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=3), nested=st.booleans())
def test_fuzz_the_converted_form_s_reader(images, masks, kinds, nested):
    """Odd names, masks without their image, images without a mask, masks named both ways: each is read with
    its own mask (any encoding), or refused in one line naming the image or the masks concerned."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "v"
        base = root / "1cls" if nested else root
        cat = base / "candle"
        for i in range(3):
            image(cat / "train" / "good" / f"{i:03d}.JPG", size=(8, 10))
        image(cat / "test" / "good" / "000.JPG", size=(8, 10))
        (cat / "test" / "bad").mkdir(parents=True)
        (cat / "ground_truth" / "bad").mkdir(parents=True)
        for s in images:  # the format named: PIL takes none from "..JPG" (a name pathlib reads as ".", ".JPG")
            Image.fromarray(np.full((8, 10, 3), 128, np.uint8)).save(cat / "test" / "bad" / f"{s}.JPG", format="JPEG")
        files: list[Path] = []
        for i, (s, how) in enumerate(sorted(masks.items())):
            name = Path(f"{s}.png" if how == "named" else f"{s}_mask.png")
            if name not in files:  # x_mask named as its image and x's mask suffixed: one file
                encoded(kinds[i % len(kinds)], (8, 10)).save(cat / "ground_truth" / "bad" / name, format="PNG")
                files.append(name)
        stems = [Path(f"{s}.JPG").stem for s in images]
        candidates = {s: [f for f in files if f.stem in (s, f"{s}_mask")] for s in stems}
        owners = [f for s in stems for f in candidates[s]]
        shared = {f for f in owners if owners.count(f) > 1}
        broken = {s for s, c in candidates.items() if len(c) != 1 or set(c) & shared}
        log = logging.getLogger("ad_core.data.layouts.mvtec")
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append
        log.addHandler(handler)
        try:
            listed = visa_converted.discover(root, "candle")
        except DatasetError as exc:
            message = str(exc)
            assert broken, f"refused a readable folder: {message}"
            assert "\n" not in message
            assert ("remove the whole ground_truth/" in message) == (not files and "has no mask" in message), \
                "dropping ground_truth/ is advised exactly where it holds no mask"
            bad = cat / "test" / "bad"
            named = [s for s in stems if f"{bad}/{s}.JPG has no mask" in message or f"({bad}/{s}.JPG)" in message
                     or f"images, {s}.JPG and " in message or f" and {s}.JPG: " in message]
            assert set(named) & broken, message  # the image (or images) whose mask is missing or in doubt
            return
        finally:
            log.removeHandler(handler)
        assert not broken
        assert sorted(s.path.stem for s in listed.test_anomalous) == sorted(stems)
        for s in listed.test_anomalous:
            assert s.mask.name == candidates[s.path.stem][0].name and s.mask_values == "labels"
            assert (read_mask(s.mask, (8, 10), s.mask_values) == region((8, 10))).all()
        unused = {f.name for f in files} - {s.mask.name for s in listed.test_anomalous}
        said = [r.getMessage() for r in records if "belong to no test image" in r.getMessage()]
        assert bool(said) == bool(unused) and all(f"{len(unused)} mask(s)" in line for line in said)
