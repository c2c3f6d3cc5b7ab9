"""The benchmarks' layouts as they ship (issue 27): each written in miniature with its real names,
extensions, mask conventions and split file; checked through detection, discovery, splits, one
end-to-end run each, and the bad variants with their one-line errors."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ad_core.data import layouts
from ad_core.data.samples import Capabilities
from ad_core.data.splits import make_splits
from ad_core.errors import DatasetError
from experiments.cli import main

pytestmark = pytest.mark.fast

RNG = np.random.default_rng(0)
SIZE = (40, 48)  # H, W


def image(path: Path, gray: bool = False, size: tuple[int, int] = SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if gray else (*size, 3)
    Image.fromarray(RNG.integers(0, 255, shape, dtype=np.uint8)).save(path)


def mask(path: Path, value: int = 255, region: tuple[slice, slice] = (slice(5, 15), slice(8, 20)),
         size: tuple[int, int] = SIZE) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size, np.uint8)
    m[region] = value
    Image.fromarray(m).save(path)
    return m > 0


# -- miniature benchmarks ------------------------------------------------------------------------
def write_visa(root: Path, split_file: bool = True, objects: tuple[str, ...] = ("candle", "pcb1"),
               size: tuple[int, int] = SIZE) -> Path:
    """<root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG, masks of class ids, split_csv/1cls.csv (CRLF);
    ``size``: each image's and mask's (H, W)."""
    rows = ["object,split,label,image,mask"]
    for obj in objects:
        for i in range(12):
            name = f"{i:04d}.JPG"
            image(root / obj / "Data" / "Images" / "Normal" / name, size=size)
            rows.append(f"{obj},{'train' if i < 10 else 'test'},normal,{obj}/Data/Images/Normal/{name},")
        for i in range(5):
            image(root / obj / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG", size=size)
            mask(root / obj / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", value=1 + i % 3, size=size)  # class ids
            rows.append(f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/{i:03d}.JPG,{obj}/Data/Masks/Anomaly/{i:03d}.png")
    if split_file:
        (root / "split_csv").mkdir(parents=True, exist_ok=True)
        (root / "split_csv" / "1cls.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    return root


def write_mvtec_ad2(root: Path, obj: str = "can") -> Path:
    cat = root / obj
    for i in range(6):
        image(cat / "train" / "good" / f"{i:03d}_regular.png")
    for i in range(4):
        image(cat / "validation" / "good" / f"{i:03d}_regular.png")
    for i in range(3):
        image(cat / "test_public" / "good" / f"{i:03d}_regular.png")
    for i, cond in enumerate(("regular", "overexposed", "shift_1", "underexposed")):
        image(cat / "test_public" / "bad" / f"{i:03d}_{cond}.png")
        mask(cat / "test_public" / "ground_truth" / "bad" / f"{i:03d}_{cond}_mask.png")
    for i in range(3):
        image(cat / "test_private" / f"{i:03d}_regular.png")
        image(cat / "test_private_mixed" / f"{i:03d}_mixed.png")
    return root


def write_loco(root: Path, obj: str = "pushpins") -> Path:
    """Several masks per anomalous image (one per region, each of one value of defects_config.json)."""
    cat = root / obj
    for split, n in (("train", 6), ("validation", 4), ("test", 3)):
        for i in range(n):
            image(cat / split / "good" / f"{i:03d}.png")
    for kind in ("logical_anomalies", "structural_anomalies"):
        for i in range(3):
            image(cat / "test" / kind / f"{i:03d}.png")
            mask(cat / "ground_truth" / kind / f"{i:03d}" / "000.png", value=255)
            mask(cat / "ground_truth" / kind / f"{i:03d}" / "001.png", value=236, region=(slice(20, 30), slice(1, 5)))
    (cat / "defects_config.json").write_text(json.dumps([
        {"defect_name": "missing_pushpin", "pixel_value": 255, "saturation_threshold": 0.8,
         "relative_saturation": True},
        {"defect_name": "color", "pixel_value": 236, "saturation_threshold": 20, "relative_saturation": False}]))
    return root


def write_btad(root: Path) -> Path:
    """01: .bmp images with .png masks; 03: .bmp and .bmp (as BTAD ships)."""
    for cat, img_ext, mask_ext in (("01", ".bmp", ".png"), ("03", ".bmp", ".bmp")):
        for i in range(6):
            image(root / cat / "train" / "ok" / f"{i:04d}{img_ext}")
        for i in range(3):
            image(root / cat / "test" / "ok" / f"{i:04d}{img_ext}")
        for i in range(4):
            image(root / cat / "test" / "ko" / f"{i:04d}{img_ext}")
            mask(root / cat / "ground_truth" / "ko" / f"{i:04d}{mask_ext}")
    return root


def write_mvtec_like(root: Path, names: tuple[str, ...], masks: bool = True) -> Path:
    for name in names:
        cat = root / name
        for i in range(6):
            image(cat / "train" / "good" / f"{i:03d}.png")
        for i in range(3):
            image(cat / "test" / "good" / f"{i:03d}.png")
        for i in range(4):
            image(cat / "test" / "scratch" / f"{i:03d}.png")
            if masks:
                mask(cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    return root


WRITERS = {
    "visa": write_visa, "mvtec_ad2": write_mvtec_ad2, "mvtec_loco": write_loco, "btad": write_btad,
    "mpdd": lambda root: write_mvtec_like(root, ("bracket_black", "tubes")),
    "mvtec": lambda root: write_mvtec_like(root, ("hazelnut", "zipper")),
    "image_level": lambda root: write_mvtec_like(root, ("cells",), masks=False),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_layout_is_detected_and_read_into_mvtec_form(tmp_path, name, caplog):
    root = WRITERS[name](tmp_path / name)
    layout = layouts.detect(root)
    assert layout.name == name
    cats = layouts.categories(root, layout)
    assert cats and all((root / c).is_dir() for c in cats)
    with caplog.at_level(logging.WARNING):
        files = layout.discover(root, cats[0])
    assert files.layout in (name, "mvtec") and files.train_good and files.test_good
    assert files.capabilities == layout.capabilities  # what code asks of the files: the layout's declaration
    for s in files.all_samples():
        assert s.path.is_file() and s.relpath.split("/")[0] in ("train", "validation", "test", "uncertain")
        assert s.relpath.split("/")[1] == ("good" if s.label == 0 else s.defect)
    if name != "image_level":
        assert files.test_anomalous and all(s.mask is not None for s in files.test_anomalous)
        assert "ground_truth" not in caplog.text
    else:
        assert not files.has_masks and "ground_truth" not in caplog.text, "image-level data: no missing-mask word"


def test_visa_uses_its_official_split_and_carves_validation_by_the_study_rule(tmp_path):
    root = write_visa(tmp_path / "visa")
    files = layouts.LAYOUTS["visa"].discover(root, "candle")
    assert files.split_source == "split_csv/1cls.csv"
    assert [s.relpath for s in files.train_good][:2] == ["train/good/0000.JPG", "train/good/0001.JPG"]
    assert len(files.train_good) == 10 and len(files.test_good) == 2 and len(files.test_anomalous) == 5
    assert all(s.mask_values == "labels" for s in files.test_anomalous)
    splits = make_splits(files)
    assert splits.source == "split_csv/1cls.csv" and len(splits.train) == 8 and len(splits.val_normal) == 2
    assert len(splits.val_anomalous) == 1 and len(splits.test_anomalous) == 4 and len(splits.test_normal) == 2
    from ad_core.data.dataset import load_pair

    _, m = load_pair(files.test_anomalous[1])  # class id 2, not 255: a defect all the same
    assert m.sum() == 10 * 12


def test_visa_without_its_split_file_says_so_and_holds_out_every_tenth_normal(tmp_path, caplog):
    root = write_visa(tmp_path / "visa", split_file=False)
    with caplog.at_level(logging.WARNING):
        files = layouts.LAYOUTS["visa"].discover(root, "candle")
    assert "no split_csv/1cls.csv" in caplog.text and files.split_source is None
    assert [s.relpath for s in files.test_good] == ["test/good/0009.JPG"] and len(files.train_good) == 11


def test_layouts_declare_capabilities_and_the_counts_check_asks_them_not_the_name(tmp_path, caplog):
    declared = {name: entry.capabilities for name, entry in layouts.LAYOUTS.items()}
    assert [n for n, c in declared.items() if c.official_split] == ["visa"]
    assert [n for n, c in declared.items() if c.by_defect_type] == ["mvtec_loco"]
    assert [n for n, c in declared.items() if c.unscored_sets] == ["mvtec_ad2"]
    assert declared["mvtec"] == declared["btad"] == declared["mpdd"] == Capabilities()
    from experiments.execution.prepare import check_counts

    files = layouts.LAYOUTS["visa"].discover(write_visa(tmp_path / "visa", split_file=False), "candle")
    with caplog.at_level(logging.WARNING):
        assert check_counts(files) is None  # no split file: the published counts are not this copy's
        assert check_counts(replace(files, capabilities=Capabilities())) is not None  # asked, not told by the name


def test_mvtec_ad2_calibrates_on_its_validation_normals_and_keeps_the_private_sets_apart(tmp_path):
    root = write_mvtec_ad2(tmp_path / "ad2")
    files = layouts.LAYOUTS["mvtec_ad2"].discover(root, "can")
    assert len(files.val_good) == 4 and sorted(files.unlabelled) == ["test_private", "test_private_mixed"]
    assert all(s.relpath.startswith("test_private") for v in files.unlabelled.values() for s in v)
    assert not any(s.relpath.startswith("test_private") for s in files.all_samples())
    splits = make_splits(files)
    assert splits.source == "validation/good" and splits.val_anomalous == [] and len(splits.train) == 6
    assert splits.val_normal == [s.relpath for s in files.val_good] and len(splits.test_anomalous) == 4


def test_loco_masks_are_the_union_of_each_image_s_region_masks(tmp_path):
    from ad_core.data.dataset import load_pair

    root = write_loco(tmp_path / "loco")
    files = layouts.LAYOUTS["mvtec_loco"].discover(root, "pushpins")
    assert files.defects == ["logical_anomalies", "structural_anomalies"] and len(files.val_good) == 4
    _, m = load_pair(files.test_anomalous[0])
    assert m.sum() == 10 * 12 + 10 * 4  # both regions, values 255 and 236


@pytest.mark.parametrize("name,damage,why", [
    ("visa", lambda r: (r / "candle" / "Data" / "Masks" / "Anomaly" / "002.png").unlink(), "has no mask: expected"),
    ("visa", lambda r: (r / "candle" / "Data" / "Images" / "Normal" / "0003.JPG").unlink(),
     "names candle/Data/Images/Normal/0003.JPG, which is not on disk"),
    ("visa", lambda r: (r / "split_csv" / "1cls.csv").write_text("object,split,label,image,mask\r\ncandle,train,"
                                                                  "normal,../../etc/passwd,\r\n"),
     "not a path inside"),
    ("visa", lambda r: (r / "split_csv" / "1cls.csv").write_text("a,b\r\n"), "are not VisA's"),
    ("mvtec_ad2", lambda r: next((r / "can" / "test_public" / "ground_truth" / "bad").iterdir()).unlink(),
     "has no mask: expected"),
    ("btad", lambda r: (r / "01" / "ground_truth" / "ko" / "0001.png").unlink(), "has no mask: expected"),
    ("mvtec_loco", lambda r: [p.unlink() for p in (r / "pushpins" / "ground_truth" / "logical_anomalies" / "001"
                                                   ).iterdir()], "holds no mask image"),
])
def test_a_broken_copy_is_one_line_naming_the_file(tmp_path, name, damage, why):
    root = WRITERS[name](tmp_path / name)
    damage(root)
    layout = layouts.detect(root)
    from ad_core.data.dataset import load_pair

    with pytest.raises(DatasetError) as exc:
        for c in layouts.categories(root, layout):
            for s in layout.discover(root, c).all_samples():
                load_pair(s)
    assert why in str(exc.value) and "\n" not in str(exc.value)


def test_a_mixed_or_unknown_folder_is_one_line_listing_what_was_expected(tmp_path):
    root = write_btad(tmp_path / "mixed")
    write_mvtec_like(root, ("hazelnut",))
    with pytest.raises(DatasetError, match=r"mixes layouts \(btad: 01, 03; mvtec: hazelnut\)"):
        layouts.detect(root)
    assert layouts.detect(root, "btad").name == "btad"  # forced: the user says which
    (tmp_path / "none" / "misc").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no category folder of a known layout. Expected per category: visa"):
        layouts.detect(tmp_path / "none")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WRITERS))
def test_a_run_reads_each_layout_natively_and_names_it(tmp_path, name, caplog):
    root = WRITERS[name](tmp_path / name)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="ad-repro"):
        code = main(["run", "--data", str(root), "--out", str(out), "--scenarios", "clean", "shift_no_adaptation",
                     "--backbone", "efficientnet_lite0", "--weights", "package", "--no-progress", "--no-bootstrap"])
    assert code == 0
    assert f"layout {name}" in caplog.text
    assert "has no ground_truth/ folder" not in caplog.text  # image-level data: no word of masks, shifted copy too
    assert json.loads((out / "provenance.json").read_text())["layout"] == name
    result = json.loads((out / "results" / "clean.json").read_text())
    for pc in result["methods"]["padim"]["per_class"].values():
        if name in ("mvtec_ad2", "mvtec_loco"):
            assert pc["threshold_rule"].startswith("normal-fpr@0.01"), pc["threshold_rule"]
        else:
            assert pc["threshold_rule"].startswith("f1")
        assert (pc["pixel_auroc"] is None) == (name == "image_level")


@pytest.mark.slow
def test_mvtec_ad2_private_sets_are_scored_into_the_server_format_and_loco_types_reported_apart(tmp_path):
    import tifffile

    root = write_mvtec_ad2(tmp_path / "ad2")
    out = tmp_path / "out"
    base = ["--backbone", "efficientnet_lite0", "--weights", "package", "--no-progress", "--no-bootstrap",
            "--scenarios", "clean"]
    assert main(["run", "--data", str(root), "--out", str(out), *base]) == 0
    for method in ("patchcore", "padim"):  # DN2 makes no maps: nothing to submit
        for name, stem in (("test_private", "regular"), ("test_private_mixed", "mixed")):
            folder = out / "submission" / method / "anomaly_images" / "can" / name
            files = sorted(p.name for p in folder.iterdir())
            assert files == [f"{i:03d}_{stem}.tiff" for i in range(3)]
            arr = tifffile.imread(folder / files[0])
            assert arr.dtype == np.float16 and arr.shape == SIZE and np.isfinite(arr).all()
    assert not (out / "submission" / "dn2").exists()
    result = json.loads((out / "results" / "clean.json").read_text())
    assert set(result["methods"]["padim"]["per_class"]) == {"can"}  # no metric claimed for the private sets
    can = result["methods"]["padim"]["per_class"]["can"]
    assert 0 <= can["au_pro_005"] <= 1 and 0 <= can["seg_f1"] <= 1, "MVTec AD 2's own measures, on test_public"
    assert can["spro"] is None and "pixel_metrics_absent" not in can, "LOCO's measure: not this benchmark's"
    loco = write_loco(tmp_path / "loco")
    out = tmp_path / "out-loco"
    assert main(["run", "--data", str(loco), "--out", str(out), *base]) == 0
    pc = json.loads((out / "results" / "clean.json").read_text())["methods"]["padim"]["per_class"]["pushpins"]
    assert set(pc["by_defect"]) == {"logical_anomalies", "structural_anomalies"}
    assert all(v["image_auroc"] is not None and v["pro"] is not None for v in pc["by_defect"].values())
    assert all(0 <= v["spro"] <= 1 for v in pc["by_defect"].values()) and 0 <= pc["spro"] <= 1
    assert pc["au_pro_005"] is None and pc["seg_f1"] is None, "MVTec AD 2's measures: not LOCO's"
    assert "Per defect type" in (out / "report.md").read_text()


def test_a_visa_split_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    root = write_visa(tmp_path / "visa")
    (root / "split_csv" / "1cls.csv").unlink()
    os.mkfifo(root / "split_csv" / "1cls.csv")
    (root / "split_csv" / "1cls.csv").chmod(0o644)
    assert (root / "split_csv" / "1cls.csv").exists()
    with pytest.raises(DatasetError, match="is a FIFO, not a regular file"):
        layouts.LAYOUTS["visa"].discover(root, "candle")


MULTI_CLASS = {  # the benchmark, and two of its categories in a miniature
    "btad": write_btad,
    "mpdd": lambda root: write_mvtec_like(root, ("bracket_black", "tubes")),
    "mvtec_loco": lambda root: write_loco(write_loco(root, "pushpins"), "screw_bag"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MULTI_CLASS))
def test_a_unified_run_is_held_to_the_benchmark_s_multi_class_table(tmp_path, name, capsys):
    """ADer's multi-class PatchCore rows (experiments/published/ader_more.json) judge the unified scenario on
    BTAD, MPDD and MVTec LOCO: a verdict per category and metric, indicative with the setting's differences
    named, never 'no references'; the single-model scenario names what no source gives."""
    root = MULTI_CLASS[name](tmp_path / name)
    out = tmp_path / "out"
    assert main(["run", "--data", str(root), "--out", str(out), "--backbone", "efficientnet_lite0", "--weights",
                 "package", "--no-progress", "--no-bootstrap", "--scenarios", "clean", "unified",
                 "--methods", "patchcore"]) == 0
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["status"] == "no references" and "not found" in verdict["summary"]
    multi = verdict["unified"]
    assert multi["status"] != "no references", multi["summary"]
    judged = multi["methods"]["patchcore"]
    assert judged["reference"] == f"ader/patchcore-unified-{name}" and judged["indicative"]
    assert {d["field"] for d in judged["setting_differences"]} >= {"backbone", "image_size"}
    categories = {e["category"] for e in judged["entries"]}
    assert categories == set(json.loads((out / "results" / "unified.json").read_text())["config"]["categories"])
    assert {e["metric"] for e in judged["entries"]} >= {"image_auroc", "pro", "iou_max"}
    assert all(e["measured"] is not None for e in judged["entries"])
    assert f"ader/patchcore-unified-{name}" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["visa", "mvtec_ad2"])
def test_a_benchmark_without_a_published_table_names_what_is_missing(tmp_path, name):
    root = WRITERS[name](tmp_path / name)
    out = tmp_path / "out"
    assert main(["run", "--data", str(root), "--out", str(out), "--backbone", "efficientnet_lite0", "--weights",
                 "package", "--no-progress", "--no-bootstrap", "--scenarios", "clean", "--methods", "padim"]) == 0
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["status"] == "no references"
    assert {"visa": "VisA paper", "mvtec_ad2": "private test sets"}[name] in verdict["summary"]


@pytest.mark.slow
@pytest.mark.parametrize("name,measures", [("mvtec_loco", ("spro",)), ("mvtec_ad2", ("au_pro_005", "seg_f1"))])
def test_a_benchmark_s_own_measures_reach_results_goldens_compare_and_report(tmp_path, name, measures, capsys):
    """LOCO's sPRO, MVTec AD 2's AU-PRO@0.05 and SegF1, ADer's IoU-max and mAD: in the results file, in a golden
    with a tolerance and its reason, in ``compare`` (a moved sPRO is named) and as report columns; the other
    benchmark's measure is no column there."""
    from experiments.gates.goldens import record

    root = WRITERS[name](tmp_path / name)
    out = tmp_path / "out"
    assert main(["run", "--data", str(root), "--out", str(out), "--backbone", "efficientnet_lite0", "--weights",
                 "package", "--no-progress", "--no-bootstrap", "--scenarios", "clean", "--methods", "padim"]) == 0
    pc = next(iter(json.loads((out / "results" / "clean.json").read_text())["methods"]["padim"]["per_class"].values()))
    for metric in (*measures, "iou_max", "mad"):
        assert isinstance(pc[metric], float), metric
    golden = tmp_path / "golden"
    record(out, golden)
    held = json.loads((golden / "clean.json").read_text())
    entry = next(iter(held["methods"]["padim"].values()))
    assert all(entry[m] == pc[m] for m in measures) and all(held["tolerances"][m]["why"] for m in measures)
    assert main(["compare", str(golden), str(out), "--tolerance", "0"]) == 0
    moved = json.loads((golden / "clean.json").read_text())
    first = next(iter(moved["methods"]["padim"]))
    moved["methods"]["padim"][first][measures[0]] -= 0.25
    (golden / "clean.json").write_text(json.dumps(moved))
    capsys.readouterr()
    assert main(["compare", str(golden), str(out)]) == 1
    assert measures[0] in capsys.readouterr().out
    header = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| class |"))
    assert all(f" {m} " in header for m in (*measures, "iou_max", "mad"))
    other = {"spro", "au_pro_005", "seg_f1"} - set(measures)
    assert not any(f" {m} " in header for m in other), "another benchmark's measure is no column"
