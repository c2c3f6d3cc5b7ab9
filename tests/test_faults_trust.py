"""The trust boundary (issue 26, docs/security.md): every case of the 186 tried, grouped as the issue
groups them.  Each asserts its outcome: exit 2 with one line naming the file (and the ``--out`` tree
byte-identical where a run refused), or the numbers of the clean run -- never a traceback, a write
outside ``--out``, a connection or a followed path from a handed-over file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ad_core.data.layouts import visa
from ad_core.data.layouts.mvtec import discover_category
from ad_core.errors import DatasetError
from conftest import run_numbers as numbers
from conftest import seal_results
from experiments.cli import main
from tests.test_compare import run_folder
from tests.test_faults import make_data
from tests.test_layouts import write_loco, write_mvtec_like, write_visa

pytestmark = pytest.mark.faults

BASE = ["--backbone", "efficientnet_lite0", "--weights", "package", "--scenarios", "clean", "--no-bootstrap",
        "--no-progress"]


def tree_digest(root: Path) -> str:
    """One SHA-256 over every path below ``root`` (folders too) and every file's bytes: equal iff unchanged."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for p in sorted(root.rglob("*")):
        h.update(p.relative_to(root).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A finished run of the clean scenario on two small embedded classes, driven by the CLI."""
    data = make_data(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("reference")
    assert run_cli(data, out) == 0
    return out, data, numbers(out)


def run_cli(data: Path, out: Path, *extra: str) -> int:
    return main(["run", "--data", str(data), "--out", str(out), *BASE, *extra])


def copy_run(reference, tmp_path: Path, name: str = "twin") -> Path:
    twin = tmp_path / name
    shutil.copytree(reference[0], twin)
    return twin


def recorded_config(reference, tmp_path: Path, **fields) -> Path:
    """A config.json as a colleague hands it over: the reference run's, with ``fields`` planted."""
    record = json.loads((reference[0] / "config.json").read_text())
    record.update(fields)
    path = tmp_path / "handed" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


# -- code execution and writes outside --out ------------------------------------------------------
def test_a_recorded_executor_and_scheduler_are_not_followed(reference, tmp_path, capsys, caplog, monkeypatch):
    """A crafted scheduler address in a handed-over config: no client is made, nothing connects, the
    run executes here, saying in one line what it did not follow."""
    import socket

    import experiments.execution.executors

    def no_dask(*a, **k):
        raise AssertionError("a Dask client was made from a file's value")

    def no_connect(self, address):
        raise AssertionError(f"connection to {address} from a file's value")

    monkeypatch.setattr(experiments.execution.executors, "DaskExecutor", no_dask)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    handed = recorded_config(reference, tmp_path, executor="dask", scheduler="tcp://198.51.100.7:8786",
                             workers=64, threads=1)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--config", str(handed), "--data", str(reference[1]), "--out", str(out)]) == 0
    assert "not followed: executor 'dask', scheduler 'tcp://198.51.100.7:8786', workers 64, threads 1" in caplog.text
    assert numbers(out) == reference[2]
    assert json.loads((out / "config.json").read_text())["executor"] == "local"


def test_a_golden_records_the_study_settings_only(reference, tmp_path):
    """golden record never copies where a run executed: a golden recorded on a cluster carries no scheduler."""
    run = copy_run(reference, tmp_path)
    record = json.loads((run / "config.json").read_text())
    record.update(executor="dask", scheduler="tcp://10.0.0.5:8786", feature_cache="/somewhere", device="cuda:3")
    (run / "config.json").write_text(json.dumps(record))
    assert main(["golden", "record", str(run), str(tmp_path / "golden")]) == 0
    kept = json.loads((tmp_path / "golden" / "config.json").read_text())
    for name in ("executor", "scheduler", "feature_cache", "device", "out", "workers", "threads", "progress"):
        assert name not in kept, name
    assert kept["data"] == record["data"] and kept["seed"] == record["seed"]  # data: a mark, never followed


def test_a_recorded_feature_cache_is_not_written_to(reference, tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere"
    handed = recorded_config(reference, tmp_path, feature_cache=str(elsewhere))
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--config", str(handed), "--data", str(reference[1]), "--out", str(out)]) == 0
    assert not elsewhere.exists() and any((out / "cache" / "features").rglob("*.pt"))
    assert f"feature_cache '{elsewhere}'" in caplog.text


@pytest.mark.parametrize("scenario", ["../../../x", "/tmp/ad-repro-escape-x", "a/b"])
def test_golden_record_names_no_file_after_a_traversal_scenario(reference, tmp_path, capsys, scenario):
    run = copy_run(reference, tmp_path)
    result = json.loads((run / "results" / "clean.json").read_text())
    result["scenario"] = scenario
    (run / "results" / "clean.json").write_text(json.dumps(result))
    seal_results(run)  # even with its checksum in order
    dest = tmp_path / "deep" / "er" / "golden"
    before = tree_digest(tmp_path)
    assert main(["golden", "record", str(run), str(dest)]) == 2
    err = one_line(capsys)
    assert "field scenario is" in err and "not the file's name 'clean'" in err
    assert tree_digest(tmp_path) == before and not Path("/tmp/ad-repro-escape-x.json").exists()


def test_golden_record_refuses_a_results_file_named_outside_plain_names(reference, tmp_path, capsys):
    run = copy_run(reference, tmp_path)
    result = json.loads((run / "results" / "clean.json").read_text())
    (run / "results" / "clean.json").unlink()
    (run / "results" / "..json").write_text(json.dumps({**result, "scenario": "."}))  # named as its file
    seal_results(run)
    assert main(["golden", "record", str(run), str(tmp_path / "g")]) == 2
    assert "is not one plain name" in one_line(capsys) and not (tmp_path / "g").exists()


def test_prepare_validates_categories_and_seed_before_writing(reference, tmp_path, capsys):
    out = tmp_path / "prep"
    for args, why in ((["--categories", "../../y"], "--categories '../../y': a category is one folder name"),
                      (["--seed", "-5"], "--seed -5: must be a whole number >= 0 and <= 4294967295")):
        assert main(["prepare", "--data", str(reference[1]), "--out", str(out), *args]) == 2
        assert why in one_line(capsys)
        assert not out.exists()
    assert not (tmp_path.parent / "y").exists()


# -- lost work: a refusal writes nothing --------------------------------------------------------
def test_a_run_of_another_configuration_is_refused_before_any_write(reference, tmp_path, capsys):
    """Other data into a folder that holds a run: refused, and the folder (splits included) byte-identical."""
    twin = copy_run(reference, tmp_path)
    other = tmp_path / "other-data"
    shutil.copytree(reference[1], other)
    (other / "brick" / "train" / "good" / "000.png").unlink()  # other images: its splits would be redone
    before = tree_digest(twin)
    assert run_cli(other, twin) == 2
    assert "holds a run with another configuration" in one_line(capsys)
    assert tree_digest(twin) == before
    assert main(["run", "--data", str(reference[1]), "--out", str(twin), *BASE, "--seed", "7"]) == 2
    assert tree_digest(twin) == before


def test_a_broken_category_refuses_before_any_category_is_written(reference, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    (data / "coffee" / "train" / "good" / "001.png").write_bytes(b"\x89PNG broken")  # the second category
    shutil.copy(data / "coffee" / "test" / "good" / "000.png", data / "coffee" / "test" / "good" / "000.jpg")
    out = tmp_path / "out"
    out.mkdir()
    before = tree_digest(out)
    assert run_cli(data, out) == 2
    assert "two images of one stem" in one_line(capsys)
    assert tree_digest(out) == before, "brick's splits were written before coffee refused"


# -- silently wrong numbers -------------------------------------------------------------------------
def to_16_bit(data: Path, dest: Path, depth: int) -> Path:
    """A copy of ``data`` whose images are 16-bit PNGs holding the 8-bit values scaled to ``depth`` bits."""
    shutil.copytree(data, dest)
    for p in dest.rglob("*.png"):
        if "ground_truth" in p.parts:
            continue
        arr = np.asarray(Image.open(p).convert("L")).astype(np.uint32)
        Image.fromarray(((arr * (2**depth - 1) + 127) // 255).astype(np.uint16)).save(p)
    return dest


def test_8_bit_values_in_16_bit_pngs_read_as_they_are(reference, tmp_path):
    """The pipeline cast to uint16: the same pixels, hence the same numbers as the 8-bit images."""
    from ad_core.data.io import read_image
    from ad_core.data.layouts.mvtec import discover_category

    gray = tmp_path / "gray"
    shutil.copytree(reference[1], gray)
    for p in gray.rglob("*.png"):
        if "ground_truth" not in p.parts:
            Image.open(p).convert("L").save(p)
    wide = to_16_bit(gray, tmp_path / "wide", 8)
    files = discover_category(wide, "brick")
    assert files.bit_depth == 8 and all(s.bits == 8 for s in files.train_good)
    for s in files.all_samples():
        assert np.array_equal(read_image(s.path, s.bits), read_image(gray / "brick" / s.relpath))
    out_gray, out_wide = tmp_path / "o8", tmp_path / "o16"
    assert run_cli(gray, out_gray) == 0 and run_cli(wide, out_wide) == 0
    assert numbers(out_wide) == numbers(out_gray)
    assert json.loads((out_wide / "provenance.json").read_text())["image_bit_depth"] == {"brick": 8, "coffee": 8}


def test_12_bit_camera_data_spans_the_full_range_and_is_recorded(tmp_path, make_category):
    from ad_core.data.io import read_image
    from ad_core.data.layouts.mvtec import discover_category

    cat = make_category(name="cam", gray=True)
    for p in cat.rglob("*.png"):
        if "ground_truth" not in p.parts:
            arr = np.asarray(Image.open(p)).astype(np.uint32)
            Image.fromarray(((arr * 4095 + 127) // 255).astype(np.uint16)).save(p)
    files = discover_category(cat.parent, "cam")
    assert files.bit_depth == 12
    img = read_image(files.train_good[0].path, files.bit_depth)
    raw = np.asarray(Image.open(files.train_good[0].path)).astype(np.uint32)
    assert np.array_equal(img, ((raw * 255 + 2047) // 4095).astype(np.uint8)) and img.max() > 200  # not 16 levels


def test_a_16_bit_mask_of_0_and_255_is_its_defect(tmp_path):
    from ad_core.data.io import read_mask

    m = np.zeros((8, 8), np.uint16)
    m[2:5, 3:6] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), m > 0)


def test_exif_orientation_is_applied_to_images_and_masks_alike(tmp_path):
    from ad_core.data.io import image_size, read_image, read_mask

    upright = np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3)
    stored = np.rot90(upright, 1)  # as the camera stored it; orientation 6: rotate 90 degrees clockwise to view
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "i.png", exif=exif)
    assert np.array_equal(read_image(tmp_path / "i.png"), upright)
    assert image_size(tmp_path / "i.png") == (6, 10)
    mask = np.zeros((6, 10), bool)
    mask[1, 2] = True
    Image.fromarray(np.ascontiguousarray(np.rot90(mask, 1)).astype(np.uint8) * 255).save(tmp_path / "m.png",
                                                                                        exif=exif)
    assert np.array_equal(read_mask(tmp_path / "m.png", (6, 10)), mask)


def test_two_images_of_one_stem_are_an_error_naming_both(make_category):
    from ad_core.data.layouts.mvtec import discover_category
    from ad_core.errors import DatasetError

    cat = make_category()
    shutil.copy(cat / "test" / "crack" / "000.png", cat / "test" / "crack" / "000.jpg")
    with pytest.raises(DatasetError, match=r"000.jpg and 000.png are two images of one stem"):
        discover_category(cat.parent, cat.name)


def test_every_file_is_read_or_named_webp_included(make_category, caplog):
    from ad_core.data.layouts.mvtec import discover_category

    cat = make_category(defects={"crack": 3})
    for i in range(3, 6):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(cat / "test" / "crack" / f"{i:03d}.webp",
                                                                      lossless=True)
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(cat / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    (cat / "test" / "crack" / "notes.txt").write_text("x")
    (cat / "train" / "good" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING):
        files = discover_category(cat.parent, cat.name)
    assert len(files.test_anomalous) == 6 and sum(s.path.suffix == ".webp" for s in files.test_anomalous) == 3
    assert "2 file(s) not read" in caplog.text and "crack/notes.txt" in caplog.text and "good/.DS_Store" in caplog.text


@pytest.mark.parametrize("damage", ["deleted", "truncated", "foreign"])
def test_compare_refuses_a_run_without_a_usable_provenance(reference, tmp_path, capsys, damage):
    twin = copy_run(reference, tmp_path)
    path = twin / "provenance.json"
    if damage == "deleted":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), "format": 2}))
    assert main(["compare", str(reference[0]), str(twin)]) == 2
    err = one_line(capsys)
    assert "nothing shows the two runs read the same data" in err and "--different-data" in err
    assert main(["compare", str(reference[0]), str(twin), "--different-data"]) == 0


@pytest.mark.parametrize("field,value,why", [
    ("bootstrap", "false", "field bootstrap input should be a valid boolean"),
    ("progress", "no", "field progress input should be a valid boolean"),
    ("device", None, "field device input should be a valid string"),
    ("weights", 5, "field weights input should be a valid string"),
    ("seed", 10**30, "holds an integer of 31 digits"),
    ("seed", True, "field seed input should be a valid integer"),
    ("hyperparameters", {"patchcore": {"coreset_ratio": 5.0}},
     "--patchcore-coreset-ratio 5.0: must be a finite number in (0, 1]"),
    ("hyperparameters", {"patchcore": {"coreset": 5.0}}, "field hyperparameters.patchcore.coreset is not a known"),
    ("coreset_ratio", 0.05, "field coreset_ratio is not a known field"),  # format 1's flat field in format 2
    ("categories", ["../brick"], "is not one plain name"),
    ("colour", "red", "field colour is not a known field"),
    ("format", 9, "format 9; this version of ad-repro reads format 2"),
])
def test_a_config_field_of_the_wrong_type_is_one_line_naming_the_file(reference, tmp_path, capsys, field, value,
                                                                       why):
    handed = recorded_config(reference, tmp_path, **{field: value})
    out = tmp_path / "out"
    assert main(["run", "--config", str(handed), "--data", str(reference[1]), "--out", str(out)]) == 2
    err = one_line(capsys)
    assert str(handed) in err and why in err, err
    assert not out.exists()


# -- tracebacks and wrong advice ---------------------------------------------------------------------
def test_a_name_that_is_not_utf8_is_refused_before_any_work(reference, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    src = data / "brick" / "test" / "good" / "000.png"
    os.rename(os.fsencode(src), os.fsencode(src.parent) + b"/caf\xe9.png")
    out = tmp_path / "out"
    assert run_cli(data, out) == 2
    assert "b'caf\\xe9.png' is not UTF-8 text" in one_line(capsys)
    assert not (out / "results").exists()


def test_an_image_over_the_pixel_limit_is_one_line_with_the_fix(reference, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    image = data / "brick" / "train" / "good" / "002.png"
    monkeypatch.setenv("AD_REPRO_MAX_IMAGE_PIXELS", "1000")  # the images are 96 x 96
    assert run_cli(data, tmp_path / "out") == 2
    err = one_line(capsys)
    assert "over the 1,000-pixel limit" in err and "AD_REPRO_MAX_IMAGE_PIXELS" in err and "/brick/" in err
    monkeypatch.setenv("AD_REPRO_MAX_IMAGE_PIXELS", str(96 * 96))
    assert run_cli(data, tmp_path / "out") == 0 and image.is_file()


@pytest.mark.parametrize("where", ["results/clean.json", "feature"])
def test_a_folder_where_a_file_belongs_is_named_and_the_rerun_succeeds(reference, tmp_path, capsys, where):
    twin = copy_run(reference, tmp_path)
    if where == "feature":
        entry = sorted((twin / "cache" / "features").rglob("*.pt"))[2]
        shutil.rmtree(twin / "models")
        shutil.rmtree(twin / "cache" / "scores")
    else:
        entry = twin / where
    entry.unlink()
    entry.mkdir()
    (entry / "x").write_text("in the way")
    assert run_cli(reference[1], twin) == 2
    err = one_line(capsys)
    assert f"{entry}: is a folder where this file belongs" in err and "move or delete that folder" in err
    assert ".tmp" not in err
    shutil.rmtree(entry)
    assert run_cli(reference[1], twin) == 0
    assert numbers(twin) == reference[2]


def test_a_truncated_run_config_is_one_line_naming_it(reference, tmp_path, capsys):
    twin = copy_run(reference, tmp_path)
    guard = twin / "run_config.json"
    guard.write_bytes(guard.read_bytes()[:40])
    before = tree_digest(twin)
    assert run_cli(reference[1], twin) == 2
    err = one_line(capsys)
    assert f"{guard}: is not complete JSON" in err and "delete it" in err
    assert tree_digest(twin) == before
    assert main(["run", "--config", str(guard), "--data", str(reference[1]), "--out", str(tmp_path / "n")]) == 0


def test_an_unreachable_scheduler_is_one_line_before_any_write(reference, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed", reason="the Dask executor is a test extra")
    import experiments.execution.executors

    monkeypatch.setattr(experiments.execution.executors, "CONNECT_TIMEOUT_S", 2)
    out = tmp_path / "out"
    assert run_cli(reference[1], out, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9") == 2
    err = one_line(capsys)
    assert "--scheduler tcp://127.0.0.1:9: no Dask scheduler answers there" in err
    assert not (out / "splits").exists() and not (out / "run_config.json").exists()


def golden_folder(reference, tmp_path: Path) -> Path:
    golden = tmp_path / "golden"
    assert main(["golden", "record", str(reference[0]), str(golden)]) == 0
    return golden


def test_a_golden_holding_a_huge_integer_is_exit_2_not_a_moved_number(reference, tmp_path, capsys):
    golden = golden_folder(reference, tmp_path)
    text = (golden / "clean.json").read_text().replace('"seed": 42', '"seed": ' + "9" * 5000)
    (golden / "clean.json").write_text(text)
    capsys.readouterr()
    assert main(["compare", str(golden), str(reference[0])]) == 2
    assert "an integer of 5000 digits" in one_line(capsys)


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo", "link out of the folder"])
def test_a_golden_file_that_is_not_a_regular_file_is_refused_at_once(reference, tmp_path, capsys, kind):
    golden = golden_folder(reference, tmp_path)
    target = golden / "clean.json"
    outside = tmp_path / "outside.json"
    shutil.copy(target, outside)
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero" if kind == "link to /dev/zero" else outside)
    capsys.readouterr()
    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("code", main(["compare", str(golden),
                                                                            str(reference[0])])), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done.get("code") == 2, "compare hung or did not refuse"
    err = one_line(capsys)
    assert str(target) in err and ("not a regular file" in err or "outside" in err)


def test_a_disk_that_fills_during_a_feature_write_is_one_line_and_the_rerun_succeeds(reference, tmp_path, capsys,
                                                                                      monkeypatch):
    """torch.save's own writer turns ENOSPC into 'enforce fail at inline_container.cc'; features are now
    serialised in memory and written as plain bytes, so the disk's error names the feature file."""
    import errno

    from ad_core.data import io

    real, calls = io.atomic_write_bytes, {"n": 0}

    def filling(path, data):
        calls["n"] += 1
        if calls["n"] == 5 and str(path).endswith(".pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", filling)
    out = tmp_path / "full"
    assert run_cli(reference[1], out) == 2
    err = one_line(capsys)
    assert "No space left on device; the disk is full: free space" in err and ".pt" in err
    assert "enforce fail" not in err
    monkeypatch.setattr(io, "atomic_write_bytes", real)
    assert run_cli(reference[1], out) == 0 and numbers(out) == reference[2]


def test_a_bad_option_into_a_finished_run_changes_nothing(reference, tmp_path, capsys):
    twin = copy_run(reference, tmp_path)
    before = tree_digest(twin)
    for extra in (["--coreset-ratio", "5"], ["--knn-backend", "annoy"], ["--categories", "../x"]):
        assert run_cli(reference[1], twin, *extra) == 2
        one_line(capsys)
        assert tree_digest(twin) == before, extra


def test_a_damaged_drift_record_is_one_line_naming_it(reference, tmp_path, capsys):
    dest = tmp_path / "golden"
    dest.mkdir()
    (dest / "drift.json").write_text('{"max_abs": {"image_auroc": -1}}')
    assert main(["golden", "record", str(reference[0]), str(dest)]) == 2
    assert f"{dest / 'drift.json'}: field max_abs.image_auroc input should be greater than or equal to 0" in \
        one_line(capsys)
    assert sorted(p.name for p in dest.iterdir()) == ["drift.json"]


def test_a_figure_outside_the_run_folder_is_refused(reference, tmp_path, capsys):
    run = copy_run(reference, tmp_path)
    result = json.loads((run / "results" / "clean.json").read_text())
    result["figures"] = ["../../../etc/passwd"]
    (run / "results" / "clean.json").write_text(json.dumps(result))
    seal_results(run)
    assert main(["golden", "record", str(run), str(tmp_path / "g")]) == 2
    assert "not a path inside visualizations/" in one_line(capsys)


@pytest.mark.parametrize("damage", ["truncated", "a list", "fifo", "link to /dev/zero"])
def test_a_damaged_copy_marker_or_shift_log_rebuilds_the_copy_in_one_line(tmp_path, caplog, damage):
    """The markers of the built-in copies and the shifted copies' logs live in a --out someone may hand over:
    read by the same regular-file, bounded reader (ad_core.data.records), never a traceback or a hang."""
    from ad_core.data.embedded import MARKER
    from ad_core.data.layouts.mvtec import discover_category
    from ad_core.shift import write_shifted_category
    from ad_core.shift.generate import PARAMS_LOG

    root = make_data(tmp_path / "embedded")
    shifted = tmp_path / "shift"
    files = discover_category(root, "brick")
    write_shifted_category(files, shifted, progress=False)
    before = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*.png")}
    for path in (root / MARKER, shifted / "brick" / PARAMS_LOG):
        raw = path.read_bytes()
        path.unlink()
        if damage == "truncated":
            path.write_bytes(raw[: len(raw) // 2])
        elif damage == "a list":
            path.write_text("[1, 2]")
        elif damage == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        make_data(tmp_path / "embedded")
        write_shifted_category(discover_category(root, "brick"), shifted, progress=False)
    assert f"embedded dataset at {root}: {root / MARKER}: " in caplog.text and ": rebuilt" in caplog.text
    assert f"shifted copy of brick: {shifted / 'brick' / PARAMS_LOG}: " in caplog.text
    assert {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*.png")} == before
    assert json.loads((root / MARKER).read_text()) and json.loads((shifted / "brick" / PARAMS_LOG).read_text())


# -- issue 31: links in run folders, reruns, the bit-depth rule, keys given twice, the environment ---------
@pytest.mark.parametrize("where", ["results", "cache", "cache/features", "models", "visualizations",
                                   "results/clean.json"])
def test_a_link_inside_a_handed_over_run_folder_is_refused_naming_it(reference, tmp_path, capsys, where):
    """A colleague's --out whose results/ (cache/, a file, ...) is a link elsewhere: refused before any write,
    naming the link, and the folder it leads to unchanged."""
    run = copy_run(reference, tmp_path)
    target, elsewhere = run / where, tmp_path / "elsewhere"
    if target.is_dir():
        shutil.copytree(target, elsewhere)
        shutil.rmtree(target)
    else:
        elsewhere.mkdir()
        shutil.copy(target, elsewhere / target.name)
        target.unlink()
        elsewhere = elsewhere / target.name
    target.symlink_to(elsewhere)
    before, run_before = tree_digest(elsewhere.parent), tree_digest(run)
    assert run_cli(reference[1], run) == 2
    err = one_line(capsys)
    assert f"{target} is a symbolic link inside it" in err and "--out" in err, err
    assert tree_digest(elsewhere.parent) == before and tree_digest(run) == run_before


def test_no_write_follows_a_link_planted_below_the_out_folder_during_a_run(tmp_path):
    """The one writer opens each folder below --out without following a link: one planted after the start
    (after check_out's scan) is refused naming it, and nothing is written where it leads."""
    from ad_core.data.io import atomic_write_bytes, confine_writes
    from ad_core.errors import LinkError

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (elsewhere / "anomaly_images").mkdir(parents=True)
    before = tree_digest(elsewhere)
    confine_writes(out)
    for link in (out / "submission", out / "submission" / "patchcore"):
        shutil.rmtree(out, ignore_errors=True)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(elsewhere)
        with pytest.raises(LinkError, match=f"^{link}: is a symbolic link inside {out}"):
            atomic_write_bytes(out / "submission" / "patchcore" / "anomaly_images" / "x.tiff", b"map")
        assert tree_digest(elsewhere) == before
    final = out / "results.json"  # a link where the file itself stands is replaced, never written through
    shutil.rmtree(out)
    out.mkdir()
    (elsewhere / "keep.json").write_text("keep")
    final.symlink_to(elsewhere / "keep.json")
    atomic_write_bytes(final, b"{}")
    assert not final.is_symlink() and final.read_bytes() == b"{}" and (elsewhere / "keep.json").read_text() == "keep"


def test_a_refused_run_leaves_no_empty_out_folder(reference, tmp_path, capsys):
    """Data-level refusals come after the options are checked: an --out that did not exist is not created."""
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    shutil.copy(data / "brick" / "train" / "good" / "001.png", data / "brick" / "train" / "good" / "001.bmp")
    out = tmp_path / "new" / "out"
    assert run_cli(data, out) == 2
    assert "two images of one stem" in one_line(capsys)
    assert not (tmp_path / "new").exists()


def test_a_rerun_removes_the_submission_map_of_a_removed_private_image_and_says_so(tmp_path, caplog):
    from tests.test_layouts import write_mvtec_ad2

    root = write_mvtec_ad2(tmp_path / "ad2")
    out = tmp_path / "out"
    args = ["run", "--data", str(root), "--out", str(out), *BASE, "--methods", "padim"]
    assert main(args) == 0
    folder = out / "submission" / "padim" / "anomaly_images" / "can" / "test_private"
    assert sorted(p.name for p in folder.iterdir()) == ["000_regular.tiff", "001_regular.tiff", "002_regular.tiff"]
    (root / "can" / "test_private" / "002_regular.png").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["000_regular.tiff", "001_regular.tiff"]
    assert "removed 1 submission map(s) of an earlier run that this run no longer produces " \
           "(padim/anomaly_images/can/test_private/002_regular.tiff)" in caplog.text


def test_a_rerun_removes_the_scores_and_figures_it_no_longer_makes(reference, tmp_path, caplog):
    run = copy_run(reference, tmp_path)
    stale_csv = run / "scores" / "clean" / "patchcore_gone.csv"
    stale_csv.write_text("relpath,label,score,predicted_anomalous\n")
    result = json.loads((run / "results" / "clean.json").read_text())
    result["figures"].append("visualizations/overlays_clean_gone.png")
    (run / "visualizations" / "overlays_clean_gone.png").write_bytes(b"png")
    (run / "results" / "clean.json").write_text(json.dumps(result))
    seal_results(run)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert run_cli(reference[1], run) == 0
    assert not stale_csv.exists() and not (run / "visualizations" / "overlays_clean_gone.png").exists()
    assert "removed 1 score file(s) of an earlier run" in caplog.text
    assert "removed 1 figure(s) of an earlier run that this run no longer produces (overlays_clean_gone.png)" \
        in caplog.text
    assert numbers(run) == reference[2]


@pytest.mark.parametrize("where", ["golden", "config", "provenance"])
def test_a_key_given_twice_is_refused_naming_it(reference, tmp_path, capsys, where):
    """json keeps the last of two equal keys in silence; the one reader refuses the file naming the key."""
    run = copy_run(reference, tmp_path)
    golden = tmp_path / "golden"
    assert main(["golden", "record", str(run), str(golden)]) == 0
    capsys.readouterr()
    path = {"golden": golden / "clean.json", "config": run / "config.json",
            "provenance": run / "provenance.json"}[where]
    text = path.read_text()
    first = next(iter(json.loads(text)))
    path.write_text(text.replace("{", "{" + json.dumps(first) + ': "planted", ', 1))
    if where == "config":
        code = main(["run", "--config", str(run), "--data", str(reference[1]), "--out", str(tmp_path / "again")])
    else:
        code = main(["compare", str(golden if where == "golden" else run), str(reference[0])])
    assert code == 2
    err = one_line(capsys)
    assert f'{path}: gives the key "{first}" twice in one object' in err, err


@pytest.mark.parametrize("value", ["abc", "-5", "1e9", "²", "2000000000000000", "0"])
def test_a_bad_pixel_limit_in_the_environment_is_one_line_naming_the_variable(reference, tmp_path, capsys,
                                                                              monkeypatch, value):
    monkeypatch.setenv("AD_REPRO_MAX_IMAGE_PIXELS", value)
    out = tmp_path / "out"
    assert run_cli(reference[1], out) == 2
    err = one_line(capsys)
    assert err.startswith(f"ad-repro: error: AD_REPRO_MAX_IMAGE_PIXELS={value!r}: must be a whole number"), err
    assert not out.exists()
    assert main(["prepare", "--data", str(reference[1]), "--out", str(out)]) == 2
    assert "AD_REPRO_MAX_IMAGE_PIXELS" in one_line(capsys)


def test_a_pixel_limit_with_spaces_around_it_is_taken(monkeypatch):
    from ad_core.data.io import max_image_pixels

    monkeypatch.setenv("AD_REPRO_MAX_IMAGE_PIXELS", " 200000000")
    assert max_image_pixels() == 200_000_000


# the bit-depth rule (ad_core.data.bit_depth): the three cases of issue 31, each against its control
def gray_copy(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    for p in dest.rglob("*.png"):
        if "ground_truth" not in p.parts:
            Image.open(p).convert("L").save(p)
    return dest


def widen(paths, depth: int) -> None:
    """Rewrite 8-bit grey PNGs as 16-bit PNGs of their values scaled to ``depth`` bits."""
    for p in paths:
        arr = np.asarray(Image.open(p)).astype(np.uint32)
        Image.fromarray(((arr * (2**depth - 1) + 127) // 255).astype(np.uint16)).save(p)


def images_of(root: Path, *parts: str) -> list[Path]:
    return sorted(p for p in root.rglob("*.png") if "ground_truth" not in p.parts
                  and all(part in p.relative_to(root).parts for part in parts))


@pytest.fixture(scope="module")
def gray_control(reference, tmp_path_factory):
    """The reference data in grey and its run: what every bit-depth case must give."""
    base = tmp_path_factory.mktemp("gray")
    gray = gray_copy(reference[1], base / "data")
    out = base / "out"
    assert run_cli(gray, out) == 0
    return gray, numbers(out)


def scores_but(run: dict, category: str, relpath: str) -> dict[str, list[str]]:
    """Every per-image (relpath, label, score) of a run's ``scores/`` files but ``category``'s ``relpath``'s (the
    decisions left out: tau may move with the one image when it calibrates)."""
    return {name: [row.rsplit(",", 1)[0] for row in text.splitlines()
                   if not (f"_{category}." in name and row.startswith(relpath + ","))]
            for name, text in run.items() if name.startswith("scores/")}


def test_a_hot_pixel_in_one_test_image_does_not_rescale_the_others(gray_control, tmp_path, caplog):
    from ad_core.data.io import read_image
    from ad_core.data.layouts.mvtec import discover_category

    gray, control = gray_control
    data = shutil.copytree(gray, tmp_path / "data")
    widen(images_of(data), 12)
    hot = data / "brick" / "test" / "good" / "001.png"
    arr = np.asarray(Image.open(hot)).copy()
    arr[5, 7] = 65535
    Image.fromarray(arr).save(hot)
    with caplog.at_level(logging.WARNING):
        files = discover_category(data, "brick")
    assert files.bit_depth == 12 and {s.bits for s in files.all_samples()} == {12}
    assert files.bit_depth_exceptions == {"test/good/001.png": "1 pixel(s) above 4095: saturated"}
    assert "contradict the training images' 12-bit depth (test/good/001.png: 1 pixel(s) above 4095" in caplog.text
    for s in files.all_samples():
        want = read_image(gray / "brick" / s.relpath)
        got = read_image(s.path, s.bits)
        if s.path == hot:
            assert got[5, 7] == 255
            got[5, 7] = want[5, 7]
        assert np.array_equal(got, want), s.relpath
    out = tmp_path / "out"
    assert run_cli(data, out) == 0
    # every other image's score is the control's to the last digit: the pixel rescaled nothing (it was
    # [[4,0],[0,5]] -> [[2,2],[0,5]] when it set the category's depth); the hot image's own score may move
    assert scores_but(numbers(out), "brick", "test/good/001.png") == scores_but(control, "brick", "test/good/001.png")
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["image_bit_depth"] == {"brick": 12, "coffee": 12}
    assert provenance["image_bit_depth_exceptions"] == {"brick": files.bit_depth_exceptions}
    assert provenance["image_bit_depth_rule"].startswith("training images' depth")


def test_test_images_saved_at_a_deeper_depth_than_the_training_images_read_at_their_own(gray_control, tmp_path,
                                                                                         caplog):
    """Train: 8-bit values in 16-bit PNGs; test: 12-bit values in 16-bit PNGs: each set reads as its camera
    wrote it (the control's numbers), the test images named."""
    gray, control = gray_control
    data = shutil.copytree(gray, tmp_path / "data")
    widen(images_of(data, "train"), 8)
    widen(images_of(data, "test"), 12)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert run_cli(data, out) == 0
    assert numbers(out) == control
    exceptions = json.loads((out / "provenance.json").read_text())["image_bit_depth_exceptions"]
    assert exceptions["brick"]["test/good/000.png"] == "12-bit values: read at its own 12-bit depth"
    assert "contradict the training images' 8-bit depth" in caplog.text


def test_an_unscored_private_image_never_changes_how_the_scored_images_are_read(tmp_path, caplog):
    """MVTec AD 2: one private image at 16 bits among 12-bit data; the public sets read at 12 bits."""
    from ad_core.data.io import read_image
    from ad_core.data.layouts import mvtec_ad2
    from tests.test_layouts import write_mvtec_ad2

    root = write_mvtec_ad2(tmp_path / "ad2")
    for p in images_of(root):
        Image.open(p).convert("L").save(p)
    control = mvtec_ad2.discover(root, "can")
    widen(images_of(root), 12)
    widen([root / "can" / "test_private" / "000_regular.png"], 16)
    with caplog.at_level(logging.WARNING):
        files = mvtec_ad2.discover(root, "can")
    assert files.bit_depth == 12
    assert files.bit_depth_exceptions == {"test_private/000_regular.png": "16-bit values: read at its own 16-bit depth"}
    for s, c in zip(files.all_samples(), control.all_samples()):
        assert s.bits == 12 and np.array_equal(read_image(s.path, s.bits), read_image(c.path)), s.relpath
    private = files.unlabelled["test_private"][0]
    assert private.bits == 16


# -- issue 31: VisA's split file checked against the folders, masks never chosen between two ------------
SMALL = (16, 16)  # H, W of the miniatures' images and masks
OBJECTS = ("candle", "pcb1")  # write_visa's: lines 2-13 candle's normals (0000-0009 train), 14-18 its anomalies


def read_rows(root: Path) -> list[list[str]]:
    """The split file's rows, header first."""
    return list(csv.reader(io.StringIO((root / visa.SPLIT_FILE).read_bytes().decode())))


def write_rows(root: Path, rows: list[list[str]]) -> None:
    """The split file as VisA ships it: CRLF line ends."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    (root / visa.SPLIT_FILE).write_text(out.getvalue(), newline="")


def at(root: Path, line: int, image: str) -> str:
    return f"{root / visa.SPLIT_FILE} line {line} ({image})"


@pytest.fixture()
def visa_root(tmp_path) -> Path:
    return write_visa(tmp_path / "visa", size=SMALL)


def refused(root: Path, category: str = "candle") -> str:
    with pytest.raises(DatasetError) as exc:
        visa.discover(root, category)
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def assert_refused_by_reader_and_run(root: Path, tmp_path: Path, capsys, want: str) -> None:
    """The reader refuses with ``want``, and ``ad-repro run`` exits 2 printing that line alone."""
    assert refused(root) == want
    capsys.readouterr()
    assert run_cli(root, tmp_path / "out") == 2
    assert one_line(capsys) == f"ad-repro: error: {want}"


# -- VisA: one image, one row -----------------------------------------------------------------------
def test_a_duplicated_row_is_refused_naming_both_lines_and_exits_2(visa_root, tmp_path, capsys):
    rows = read_rows(visa_root)
    write_rows(visa_root, [*rows, rows[2]])  # line 3: candle's train image 0001, again at line 36
    want = (f"{at(visa_root, 36, 'candle/Data/Images/Normal/0001.JPG')}: repeats line 3, which would count the "
            "image twice; delete one of the two rows")
    assert_refused_by_reader_and_run(visa_root, tmp_path, capsys, want)


def test_an_anomaly_counted_twice_is_refused(visa_root):
    rows = read_rows(visa_root)
    write_rows(visa_root, [*rows[:16], rows[15], *rows[16:]])  # line 16 (anomaly 002) again at line 17
    assert refused(visa_root) == (f"{at(visa_root, 17, 'candle/Data/Images/Anomaly/002.JPG')}: repeats line 16, "
                                  "which would count the image twice; delete one of the two rows")


def test_one_image_in_train_and_in_test_is_refused(visa_root):
    rows = read_rows(visa_root)
    write_rows(visa_root, [*rows, ["candle", "test", "normal", "candle/Data/Images/Normal/0001.JPG", ""]])
    assert refused(visa_root) == (
        f"{at(visa_root, 36, 'candle/Data/Images/Normal/0001.JPG')}: the image is already named by line 3 (train "
        "normal), here test normal: one image in two rows is counted twice or both trains and tests; keep one of "
        "the rows or restore VisA's split file")


# -- VisA: a row against its folders -----------------------------------------------------------------
def test_a_row_whose_object_is_not_its_image_s_folder_is_refused_and_exits_2(visa_root, tmp_path, capsys):
    rows = read_rows(visa_root)
    rows[2][3] = "pcb1/Data/Images/Normal/0001.JPG"  # a candle row naming pcb1's image
    write_rows(visa_root, rows)
    want = (f"{at(visa_root, 3, 'pcb1/Data/Images/Normal/0001.JPG')}: a candle row names an image of pcb1/: a row's "
            "object is the folder its image lies in; correct the row or restore VisA's split file")
    assert_refused_by_reader_and_run(visa_root, tmp_path, capsys, want)


@pytest.mark.parametrize("line,label,folder", [(14, "normal", "Normal"), (12, "anomaly", "Anomaly")])
def test_a_label_contradicting_the_image_s_folder_is_refused(visa_root, line, label, folder):
    rows = read_rows(visa_root)
    rows[line - 1][2] = label  # an anomaly called normal; a test normal called anomaly
    write_rows(visa_root, rows)
    assert refused(visa_root) == (
        f"{at(visa_root, line, rows[line - 1][3])}: a {label} row names an image outside candle/Data/Images/"
        f"{folder}/: its label contradicts its folder; correct the label or restore VisA's split file")


def test_a_normal_row_with_a_mask_is_refused(visa_root):
    rows = read_rows(visa_root)
    rows[2][4] = "candle/Data/Masks/Anomaly/000.png"
    write_rows(visa_root, rows)
    assert refused(visa_root) == (
        f"{at(visa_root, 3, 'candle/Data/Images/Normal/0001.JPG')}: a normal row names a mask "
        "(candle/Data/Masks/Anomaly/000.png); a normal image has none: empty the mask column or correct the label")


@pytest.mark.parametrize("mask,why", [
    ("pcb1/Data/Masks/Anomaly/000.png", "lies outside candle/Data/Masks/Anomaly/; point the row at "
                                        "candle/Data/Masks/Anomaly/000.png or restore VisA's split file"),
    ("candle/Data/Masks/Anomaly/001.png", "is another image's (VisA names it 000.png): another defect would be "
                                          "scored; point the row at candle/Data/Masks/Anomaly/000.png or restore "
                                          "VisA's split file"),
])
def test_an_anomaly_s_mask_must_be_its_own_in_its_object_s_mask_folder(visa_root, mask, why):
    rows = read_rows(visa_root)
    rows[13][4] = mask  # line 14: anomaly 000
    write_rows(visa_root, rows)
    assert refused(visa_root) == f"{at(visa_root, 14, 'candle/Data/Images/Anomaly/000.JPG')}: the mask {mask} {why}"


@pytest.mark.parametrize("suffix", [".jpg", ".JPG", ".jpeg", ".Jpeg"])
def test_a_jpeg_mask_is_refused_even_on_disk(visa_root, suffix):
    """Compression noise would be read as defect pixels: refused as the MVTec reader refuses non-binary masks."""
    name = f"candle/Data/Masks/Anomaly/000{suffix}"
    shutil.copy(visa_root / "candle/Data/Images/Anomaly/000.JPG", visa_root / name)
    rows = read_rows(visa_root)
    rows[13][4] = name
    write_rows(visa_root, rows)
    assert refused(visa_root) == (
        f"{at(visa_root, 14, 'candle/Data/Images/Anomaly/000.JPG')}: the mask {name} is a JPEG, whose compression "
        "noise would read as defect pixels (non-binary masks are refused as MVTec AD's are); use VisA's PNG mask "
        "candle/Data/Masks/Anomaly/000.png")


def test_the_real_split_file_s_form_reads_unchanged(visa_root):
    """CRLF, VisA's columns, every row consistent: the same files as before the checks (tests/test_layouts.py)."""
    files = visa.discover(visa_root, "candle")
    assert (len(files.train_good), len(files.test_good), len(files.test_anomalous)) == (10, 2, 5)
    assert [s.mask.name for s in files.test_anomalous] == [f"{i:03d}.png" for i in range(5)]


# -- MVTec layout: which file is the mask -------------------------------------------------------------
def test_a_loco_mask_file_beside_a_mask_folder_is_refused_naming_both_and_exits_2(tmp_path, capsys):
    root = write_loco(tmp_path / "loco")
    gt = root / "pushpins" / "ground_truth" / "logical_anomalies"
    shutil.copy(gt / "001" / "000.png", gt / "001_mask.png")
    image = root / "pushpins" / "test" / "logical_anomalies" / "001.png"
    want = (f"{gt}: 001/ and 001_mask.png are 2 masks of one image ({image}): which one is its defect would be a "
            "guess; keep one of them")
    with pytest.raises(DatasetError) as exc:
        discover_category(root, "pushpins")
    assert str(exc.value) == want
    capsys.readouterr()
    assert run_cli(root, tmp_path / "out") == 2
    assert one_line(capsys) == f"ad-repro: error: {want}"


def test_a_mask_suffix_in_another_case_is_the_mask(tmp_path):
    from ad_core.data.dataset import load_pair

    root = write_mvtec_like(tmp_path / "data", ("hazelnut",))
    gt = root / "hazelnut" / "ground_truth" / "scratch"
    (gt / "001_mask.png").rename(gt / "001_mask.PNG")
    files = discover_category(root, "hazelnut")
    assert files.test_anomalous[1].mask == gt / "001_mask.PNG"
    assert load_pair(files.test_anomalous[1])[1].any()
    shutil.copy(gt / "001_mask.PNG", gt / "001_mask.png")  # both, on a case-sensitive file system: which?
    with pytest.raises(DatasetError) as exc:
        discover_category(root, "hazelnut")
    assert str(exc.value) == (f"{gt}: 001_mask.PNG and 001_mask.png are 2 masks of one image "
                              f"({root / 'hazelnut/test/scratch/001.png'}): which one is its defect would be a "
                              "guess; keep one of them")


def test_a_missing_mask_says_what_was_found_and_never_to_drop_masks(tmp_path):
    root = write_mvtec_like(tmp_path / "data", ("hazelnut",))
    gt = root / "hazelnut" / "ground_truth" / "scratch"
    (gt / "001_mask.png").rename(gt / "001-mask.png")
    image = root / "hazelnut" / "test" / "scratch" / "001.png"
    with pytest.raises(DatasetError) as exc:
        discover_category(root, "hazelnut")
    assert str(exc.value) == (f"Anomalous image {image} has no mask: expected {gt / '001_mask.png'} (or 001.png, or "
                              f"a folder 001/ of masks); found 001-mask.png for 001 in {gt}. Add the mask.")
    for p in gt.iterdir():  # a ground_truth/ folder with no mask at all: dropping it is advice worth giving
        p.unlink()
    with pytest.raises(DatasetError) as exc:
        discover_category(root, "hazelnut")
    image = image.with_name("000.png")
    assert str(exc.value) == (f"Anomalous image {image} has no mask: expected {gt / '000_mask.png'} (or 000.png, or "
                              f"a folder 000/ of masks); found nothing for 000 in {gt}. Add the mask, or remove the "
                              "whole ground_truth/ folder (it holds no mask) to use the category for image-level "
                              "metrics only.")


# -- issue 31: golden record never writes into a run folder ------------------------------------------
ADVICE = "record into a separate golden folder (e.g. golden/<dataset>-<backbone>)"


def a_run(root: Path) -> Path:
    """A small sealed run folder (results/clean.json, checksums.json, provenance.json) with its config.json."""
    run = run_folder(root)
    (run / "config.json").write_text(json.dumps({"format": 1, "seed": 7, "scenarios": ["clean"]}))
    return run


def test_a_golden_recorded_into_another_run_folder_is_refused_before_writing(tmp_path, capsys):
    run, other = a_run(tmp_path / "run"), a_run(tmp_path / "other")
    before = tree_digest(tmp_path)
    assert main(["golden", "record", str(run), str(other)]) == 2
    assert one_line(capsys) == (f"ad-repro golden record: {other}: is a run folder (it holds provenance.json, results, "
                                f"checksums.json), whose config.json this would overwrite: {ADVICE}")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("mark", ["provenance.json", "results", "run_config.json", "checksums.json"])
def test_any_mark_of_a_run_folder_is_enough(tmp_path, capsys, mark):
    run, dest = a_run(tmp_path / "run"), tmp_path / "dest"
    dest.mkdir()
    (dest / mark).mkdir() if mark == "results" else (dest / mark).write_text("{}")
    before = tree_digest(tmp_path)
    assert main(["golden", "record", str(run), str(dest)]) == 2
    assert f"{dest}: is a run folder (it holds {mark}), whose config.json" in one_line(capsys)
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("where", [".", "results", "golden"])
def test_the_run_folder_itself_or_a_folder_inside_it_is_refused(tmp_path, capsys, where):
    run = a_run(tmp_path / "run")
    dest = run if where == "." else run / where
    before = tree_digest(tmp_path)
    assert main(["golden", "record", str(run), str(dest)]) == 2
    what = "is the run folder itself" if where == "." else f"is inside the run folder {run}"
    assert one_line(capsys) == f"ad-repro golden record: {dest}: {what}: {ADVICE}"
    assert tree_digest(tmp_path) == before


def test_a_separate_golden_folder_is_still_recorded(tmp_path, capsys):
    run, dest = a_run(tmp_path / "run"), tmp_path / "golden"
    assert main(["golden", "record", str(run), str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["clean.json", "config.json"]
    assert json.loads((run / "config.json").read_text())["seed"] == 7


def test_a_test_setting_from_the_environment_is_checked_too():
    """AD_REPRO_REQUIRE_CUDA=yes was taken for 'no' in silence: the suite now refuses it in one line."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/test_thresholds.py"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "AD_REPRO_REQUIRE_CUDA": "yes"})
    assert done.returncode == 4, done.stdout[-500:] + done.stderr[-500:]
    assert "AD_REPRO_REQUIRE_CUDA='yes': set it to 1 (fail without CUDA) or 0" in done.stderr
