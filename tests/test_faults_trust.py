"""The trust boundary (issue 26, docs/security.md): every case of the 186 tried, grouped as the issue
groups them.  Each asserts its outcome: exit 2 with one line naming the file (and the ``--out`` tree
byte-identical where a run refused), or the numbers of the clean run -- never a traceback, a write
outside ``--out``, a connection or a followed path from a handed-over file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_numbers as numbers
from conftest import seal_results
from experiments.cli import main
from tests.test_faults import make_data

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

    import experiments.executors

    def no_dask(*a, **k):
        raise AssertionError("a Dask client was made from a file's value")

    def no_connect(self, address):
        raise AssertionError(f"connection to {address} from a file's value")

    monkeypatch.setattr(experiments.executors, "DaskExecutor", no_dask)
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
    for args, why in ((["--categories", "../../y"], "is not one plain name"),
                      (["--seed", "-5"], "--seed -5: must be a whole number in [0, 4294967295]")):
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
    from ad_core.data.layout import discover_category

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
    from ad_core.data.layout import discover_category

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
    from ad_core.data.layout import discover_category
    from ad_core.errors import DatasetError

    cat = make_category()
    shutil.copy(cat / "test" / "crack" / "000.png", cat / "test" / "crack" / "000.jpg")
    with pytest.raises(DatasetError, match=r"000.jpg and 000.png are two images of one stem"):
        discover_category(cat.parent, cat.name)


def test_every_file_is_read_or_named_webp_included(make_category, caplog):
    from ad_core.data.layout import discover_category

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
    ("coreset_ratio", 5.0, "--coreset-ratio 5.0: must be a finite number in (0, 1]"),
    ("categories", ["../brick"], "is not one plain name"),
    ("colour", "red", "field colour is not a known field"),
    ("format", 9, "format 9; this version of ad-repro reads format 1"),
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
    import experiments.executors

    monkeypatch.setattr(experiments.executors, "CONNECT_TIMEOUT_S", 2)
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
    from ad_core.data.layout import discover_category
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
