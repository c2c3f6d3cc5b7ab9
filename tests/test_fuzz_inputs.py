"""Property-based fuzzing of every reader of outside files (issue 26, docs/security.md).

Generated configurations, golden folders, run folders and data folders, each with random damage
(wrong types, truncation, flipped bytes, links, FIFOs, huge numbers, traversal names, bit depths,
EXIF orientations), each held to the invariant: it is read as the clean file is, or refused with
one line naming a file of the folder (exit 2) -- never a traceback, never a write outside the
folder, never a connection.  The budget is small in CI; ``pytest -m faults --hypothesis-profile
deep`` runs 25x more examples.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import seal_results, write_category
from experiments.cli import config_from_file, main

pytestmark = pytest.mark.faults


def budget(ci: int) -> int:
    """``ci`` examples in CI (the default profile), the deep profile's count by hand."""
    return ci if settings.default.max_examples <= 100 else settings.default.max_examples


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
    | st.sampled_from(["../../x", "/etc/passwd", "tcp://203.0.113.9:8786", "", ".", "a/b", "false", "cuda:7"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@contextlib.contextmanager
def no_network():
    """Any connection attempt fails the example (a file's value must never be connected to)."""
    real = socket.socket.connect

    def refuse(self, address):
        raise AssertionError(f"connection to {address} from a handed-over file")

    socket.socket.connect = refuse
    try:
        yield
    finally:
        socket.socket.connect = real


def damage_json(draw, value: object) -> object:
    """One random edit of a JSON value: a node replaced, removed or added somewhere inside it."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["replace", "remove", "recurse", "add"]))
        out = dict(value)
        if action == "replace":
            out[key] = draw(JSON)
        elif action == "remove":
            del out[key]
        elif action == "add":
            out[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
        else:
            out[key] = damage_json(draw, value[key])
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], damage_json(draw, value[i]), *value[i + 1:]]
    return draw(JSON)


def write_damaged(draw, path: Path, value: object) -> None:
    """``value`` written to ``path`` with one kind of damage: its content, its bytes, or what the file is."""
    kind = draw(st.sampled_from(["content", "content", "truncate", "flip", "fifo", "link-out", "link-dev",
                                 "folder", "huge-int"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "content":
        path.write_text(json.dumps(damage_json(draw, value)))
    elif kind == "truncate":
        text = json.dumps(value).encode()
        path.write_bytes(text[:draw(st.integers(0, max(0, len(text) - 1)))])
    elif kind == "flip":
        raw = bytearray(json.dumps(value).encode())
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-out":  # to a file outside the folder it was handed over in
        outside = path.parents[1] / "elsewhere" / path.name
        outside.parent.mkdir(parents=True, exist_ok=True)
        outside.write_text(json.dumps(value))
        path.symlink_to(outside)
    elif kind == "link-dev":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_text(json.dumps(value).replace("42", "4" * draw(st.integers(20, 5000)), 1))


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ad-repro-fuzz-"))


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# -- configurations -------------------------------------------------------------------------------
def base_config(data: Path) -> dict:
    from experiments.config import RunConfig

    return {"format": 1, **RunConfig(out=Path("/recorded/out"), data=str(data)).to_json(),
            "executor": "dask", "scheduler": "tcp://203.0.113.9:8786", "feature_cache": "/recorded/cache"}


@settings(max_examples=budget(40), **FUZZ)
@given(st.data())
def test_a_damaged_configuration_is_read_strictly_or_refused_in_one_line(tmp_path, data):
    root = fresh_dir()
    try:
        path = root / "handed" / "config.json"
        write_damaged(data.draw, path, base_config(tmp_path))
        before = listing(root)
        args = argparse.Namespace(data=str(tmp_path), weights="package", preset=None)
        explicit = {"out": root / "out", "data": str(tmp_path), "weights": "package"}
        with no_network():
            try:
                config = config_from_file(path, args, explicit)
            except ValueError as exc:  # ConfigError (a FileFormatError is turned into one)
                message = str(exc)
                assert "\n" not in message and str(path) in message, message
                assert type(exc).__name__ == "ConfigError"
            else:  # read: nothing where and how the run executes came from the file
                assert config.out == root / "out" and config.data == str(tmp_path)
                assert (config.executor, config.scheduler, config.feature_cache) == ("local", None, None)
                assert config.device == "auto" and config.weights == "package"
        assert listing(root) == before, "reading a configuration wrote something"
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- golden folders and run folders ----------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A small run folder (one scenario, two classes, sealed, with provenance) and its golden."""
    from tests.test_compare import scenario

    run = tmp_path_factory.mktemp("run")
    (run / "results").mkdir()
    (run / "results" / "clean.json").write_text(json.dumps(scenario()))
    (run / "provenance.json").write_text(json.dumps({"format": 1, "data_digest": "0" * 64}))
    seal_results(run)
    golden = tmp_path_factory.mktemp("golden")
    assert main(["golden", "record", str(run), str(golden)]) == 0
    return run, golden


def compare_outcome(a: Path, b: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["compare", str(a), str(b)])
    err = capsys.readouterr().err.strip()
    assert code in (0, 1, 2)
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return code, err


@settings(max_examples=budget(40), **FUZZ)
@given(st.data())
def test_a_damaged_golden_folder_is_compared_or_refused_in_one_line(recorded, capsys, data):
    run, golden = recorded
    root = fresh_dir()
    try:
        folder = root / "golden"
        shutil.copytree(golden, folder)
        name = data.draw(st.sampled_from(["clean.json", "drift.json", "config.json", "extra.json"]))
        value = json.loads((golden / "clean.json").read_text())
        (folder / name).unlink(missing_ok=True)
        write_damaged(data.draw, folder / name, value)
        before = listing(root)
        with no_network():
            code, err = compare_outcome(folder, run, capsys)
        if code == 2:
            assert str(folder) in err or str(run) in err, err
        assert listing(root) == before
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=budget(40), **FUZZ)
@given(st.data())
def test_a_damaged_run_folder_is_compared_or_refused_in_one_line(recorded, capsys, data):
    run, golden = recorded
    root = fresh_dir()
    try:
        folder = root / "run"
        shutil.copytree(run, folder)
        name = data.draw(st.sampled_from(["results/clean.json", "checksums.json", "provenance.json"]))
        value = json.loads((run / name).read_text())
        (folder / name).unlink()
        write_damaged(data.draw, folder / name, value)
        if name == "results/clean.json" and data.draw(st.booleans()):
            with contextlib.suppress(OSError):
                seal_results(folder)  # a damaged result whose checksum was recorded after the damage
        before = listing(root)
        with no_network():
            for a, b in ((run, folder), (golden, folder)):
                code, err = compare_outcome(a, b, capsys)
                if code == 2:
                    assert str(folder) in err or "--different-data" in err, err
        assert listing(root) == before
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- data folders ---------------------------------------------------------------------------------
ORIENT = {  # EXIF orientation -> how the camera stored an upright array (its inverse is applied on reading)
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, 1), 7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, -1)}
DATA_DAMAGE = ("bit-depth", "mask-16-bit", "exif", "non-image", "fifo", "dangling-link", "same-stem", "truncated",
               "huge-declared", "not-utf8")  # in this order: a rename last


def clean_arrays(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from ad_core.data.dataset import load_pair
    from ad_core.data.layout import discover_category

    files = discover_category(root, "widget")
    return {s.relpath: load_pair(s) for s in files.train_good + files.test_good + files.test_anomalous}


@pytest.fixture(scope="module")
def clean_category(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean-data")
    write_category(root, "widget", n_train=3, n_test_good=2, defects={"crack": 2}, size=(12, 16), gray=True)
    return root, clean_arrays(root)


@settings(max_examples=budget(30), **FUZZ)
@given(st.data())
def test_a_damaged_data_folder_reads_as_the_clean_one_or_is_refused_naming_a_file(clean_category, data):
    """Content-preserving changes (bit depth, EXIF orientation, stray files, FIFOs, links, 16-bit masks)
    read exactly as the clean folder; the others are a DatasetError of one line naming the category."""
    from ad_core.errors import DatasetError

    clean_root, want = clean_category
    root = fresh_dir()
    try:
        shutil.copytree(clean_root, root, dirs_exist_ok=True)
        cat = root / "widget"
        images = sorted(p for p in cat.rglob("*.png") if "ground_truth" not in p.parts)
        kinds = data.draw(st.lists(st.sampled_from(DATA_DAMAGE), min_size=1, max_size=3, unique=True))
        kinds.sort(key=DATA_DAMAGE.index)  # re-encodings first: a later EXIF tag must not be written over
        preserving = True
        for kind in kinds:
            target = data.draw(st.sampled_from(images))
            if kind == "bit-depth":
                depth = data.draw(st.sampled_from([8, 10, 12, 14, 16]))
                for p in images:  # the whole category from one camera
                    arr = np.asarray(Image.open(p)).astype(np.uint32)
                    Image.fromarray(((arr * (2**depth - 1) + 127) // 255).astype(np.uint16)).save(p)
            elif kind == "exif":
                orientation = data.draw(st.integers(1, 8))
                arr = np.asarray(Image.open(target))
                exif = Image.Exif()
                exif[0x0112] = orientation
                Image.fromarray(np.ascontiguousarray(ORIENT[orientation](arr))).save(target, exif=exif)
                mask = cat / "ground_truth" / target.parent.name / f"{target.stem}_mask.png"
                if mask.is_file():  # masks alike
                    m = np.asarray(Image.open(mask))
                    Image.fromarray(np.ascontiguousarray(ORIENT[orientation](m))).save(mask, exif=exif)
            elif kind == "non-image":
                (target.parent / data.draw(st.sampled_from(["notes.txt", ".DS_Store", "Thumbs.db"]))).write_bytes(
                    b"\x00\x01")
            elif kind == "fifo":
                with contextlib.suppress(FileExistsError):
                    os.mkfifo(target.parent / "pipe.png")
            elif kind == "dangling-link":
                with contextlib.suppress(FileExistsError):
                    (target.parent / "gone.png").symlink_to(root / "nowhere.png")
            elif kind == "mask-16-bit":
                for m in (cat / "ground_truth").rglob("*.png"):
                    Image.fromarray((np.asarray(Image.open(m)) > 0).astype(np.uint16) * 255).save(m)
            else:
                preserving = False
                if kind == "same-stem":
                    shutil.copy(target, target.with_suffix(".bmp"))
                elif kind == "truncated":
                    target.write_bytes(target.read_bytes()[:30])
                elif kind == "not-utf8":
                    os.rename(os.fsencode(target), os.fsencode(target.parent) + b"/\xff" + os.fsencode(target.name))
                else:  # a header claiming 60,000 x 60,000 pixels
                    raw = bytearray(target.read_bytes())
                    raw[16:24] = (60000).to_bytes(4, "big") * 2
                    target.write_bytes(bytes(raw))
        before = listing(root)
        try:
            got = clean_arrays(root)
        except DatasetError as exc:
            message = str(exc)
            assert "\n" not in message and str(root) in message, message
            assert not preserving, f"{kinds}: refused a content-preserving change: {message}"
        else:
            assert preserving, f"{kinds}: a damaged folder was read without a word"
            assert set(got) == set(want)
            for rel, (image, mask) in want.items():
                assert np.array_equal(got[rel][0], image), (kinds, rel)
                assert np.array_equal(got[rel][1], mask), (kinds, rel)
        assert listing(root) == before, "reading a data folder wrote into it"
    finally:
        shutil.rmtree(root, ignore_errors=True)
