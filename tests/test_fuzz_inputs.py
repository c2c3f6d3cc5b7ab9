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
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ad_core.data.layouts import visa
from ad_core.errors import DatasetError
from conftest import seal_results, write_category
from experiments.cli import config_from_file, main
from tests.test_faults_trust import OBJECTS, SMALL, read_rows, write_rows
from tests.test_layouts import write_visa

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


def duplicated_key(draw, value: dict) -> str:
    """``value`` as JSON text with one key of one of its objects given twice: first with another value, then
    with its own (``json`` alone keeps the last, so the file would read as the clean one in silence)."""
    objects = [value]
    for obj in objects:  # every non-empty object inside, breadth first
        objects += [v for v in obj.values() if isinstance(v, dict) and v]
    target = draw(st.sampled_from(objects))
    key, first = draw(st.sampled_from(sorted(target))), json.dumps(draw(JSON))

    def dump(v: object) -> str:
        if isinstance(v, dict):
            pairs = [f"{json.dumps(key)}: {first}"] if v is target else []
            return "{" + ", ".join(pairs + [f"{json.dumps(k)}: {dump(x)}" for k, x in v.items()]) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(dump(x) for x in v) + "]"
        return json.dumps(v)

    return dump(value)


def write_damaged(draw, path: Path, value: object) -> str:
    """``value`` written to ``path`` with one kind of damage: its content, its bytes, a key given twice, or what
    the file is; the kind is returned ("duplicate-key" must be refused whatever the values)."""
    kinds = ["content", "content", "truncate", "flip", "fifo", "link-out", "link-dev", "folder", "huge-int"]
    kind = draw(st.sampled_from(kinds + (["duplicate-key"] if isinstance(value, dict) and value else [])))
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "duplicate-key":
        path.write_text(duplicated_key(draw, value))
    elif kind == "content":
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
    return kind


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ad-repro-fuzz-"))


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# -- configurations -------------------------------------------------------------------------------
def base_config(data: Path) -> dict:
    from experiments.definition.config import CONFIG_FORMAT, RunConfig

    return {"format": CONFIG_FORMAT, **RunConfig(out=Path("/recorded/out"), data=str(data)).to_json(),
            "executor": "dask", "scheduler": "tcp://203.0.113.9:8786", "feature_cache": "/recorded/cache"}


@settings(max_examples=budget(40), **FUZZ)
@given(st.data())
def test_a_damaged_configuration_is_read_strictly_or_refused_in_one_line(tmp_path, data):
    root = fresh_dir()
    try:
        path = root / "handed" / "config.json"
        kind = write_damaged(data.draw, path, base_config(tmp_path))
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
                assert kind != "duplicate-key", "a key given twice was read in silence"
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
        kind = write_damaged(data.draw, folder / name, value)
        before = listing(root)
        with no_network():
            code, err = compare_outcome(folder, run, capsys)
        if code == 2:
            assert str(folder) in err or str(run) in err, err
        if kind == "duplicate-key" and name in ("clean.json", "extra.json"):  # the files compare reads
            assert code == 2, "a key given twice was read in silence"  # (the first value may be refused first)
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
        kind = write_damaged(data.draw, folder / name, value)
        if name == "results/clean.json" and data.draw(st.booleans()):
            with contextlib.suppress(OSError):
                seal_results(folder)  # a damaged result whose checksum was recorded after the damage
        before = listing(root)
        with no_network():
            for a, b in ((run, folder), (golden, folder)):
                code, err = compare_outcome(a, b, capsys)
                if code == 2:
                    assert str(folder) in err or "--different-data" in err, err
                assert kind != "duplicate-key" or code == 2, "a key given twice was read in silence"
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
    from ad_core.data.layouts.mvtec import discover_category

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


# -- issue 31: links in a run folder, settings from the environment, the bit-depth rule ---------------------
RUN_TREE = ("results/clean.json", "results/summary.csv", "checksums.json", "provenance.json", "config.json",
            "cache/features/k1/ab.pt", "cache/scores/patchcore_brick/clean_brick_test.npz",
            "models/patchcore_brick.npy", "scores/clean/patchcore_brick.csv", "thresholds/clean.json",
            "visualizations/roc_clean.png", "submission/padim/anomaly_images/can/test_private/000_regular.tiff",
            "splits/brick.json", "data/embedded-shift/brick/train/good/000.png", "report.md")


@settings(max_examples=budget(40), **FUZZ)
@given(st.data())
def test_a_link_at_any_level_of_a_run_folder_is_refused_and_never_written_through(data):
    """A run folder's files (every kind the suite writes), one folder or file of it replaced by a link
    (elsewhere, dangling, to a device): ``check_out`` refuses the folder naming the link, and the one writer,
    asked to write every file anyway (a link planted after the check), writes nothing through it."""
    from ad_core.data.io import atomic_write_bytes, confine_writes
    from ad_core.errors import LinkError
    from experiments.definition.config import ConfigError, check_out

    root = fresh_dir()
    try:
        out, elsewhere = root / "out", root / "elsewhere"
        for rel in RUN_TREE:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(b"old")
        levels = sorted({p.as_posix() for rel in RUN_TREE for p in (Path(rel), *Path(rel).parents[:-1])})
        chosen = out / data.draw(st.sampled_from(levels))
        kind = data.draw(st.sampled_from(["elsewhere", "dangling", "device"] if chosen.is_file() else
                                         ["elsewhere", "dangling"]))
        elsewhere.mkdir()
        if kind == "elsewhere":
            shutil.move(chosen, elsewhere / chosen.name)
        else:
            shutil.rmtree(chosen) if chosen.is_dir() else chosen.unlink()
        chosen.symlink_to({"elsewhere": elsewhere / chosen.name, "dangling": root / "nowhere",
                           "device": Path("/dev/null")}[kind])
        before = {p.as_posix(): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
        with pytest.raises(ConfigError) as refused:
            check_out(out)
        assert f"{chosen} is a symbolic link inside it" in str(refused.value) and "\n" not in str(refused.value)
        confine_writes(out)
        for rel in RUN_TREE:
            target = out / rel
            if chosen in target.parents:
                with pytest.raises(LinkError, match=f"^{chosen}: is a symbolic link inside {out}"):
                    atomic_write_bytes(target, b"new")
            else:
                atomic_write_bytes(target, b"new")  # the link itself, where the file stands, is replaced
                assert not target.is_symlink() and target.read_bytes() == b"new"
        assert {p.as_posix(): p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()} == before
        assert not (root / "nowhere").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


ENV_VALUES = (st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=16)
              | st.integers(-10, 2**41).map(str) | st.sampled_from(["1e9", " 200000000", "²", "0x10", "1_000", "+5"]))


@settings(max_examples=budget(60), **FUZZ)
@given(ENV_VALUES)
def test_a_setting_from_the_environment_is_taken_as_an_option_is_or_refused_naming_it(value):
    """``AD_REPRO_MAX_IMAGE_PIXELS``: its digits taken, or one line naming the variable (the run's check too);
    never ignored, never an image called corrupt."""
    from ad_core.data.io import MAX_PIXELS_ENV, max_image_pixels
    from ad_core.errors import SettingError
    from experiments.definition.config import ConfigError, check_environment

    old = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = value
    try:
        text = value.strip()
        valid = value == "" or (text.isascii() and text.isdigit() and 1 <= int(text) <= 2**40)
        try:
            limit = max_image_pixels()
        except SettingError as exc:
            assert not valid and "\n" not in str(exc) and str(exc).startswith(f"{MAX_PIXELS_ENV}={value!r}:")
            with pytest.raises(ConfigError, match=MAX_PIXELS_ENV):
                check_environment()
        else:
            assert valid and (value == "" or limit == int(text))
            check_environment()
    finally:
        if old is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = old


@pytest.fixture(scope="module")
def depth_category(tmp_path_factory):
    """A grey MVTec-layout category with an uncertain group, and its 8-bit arrays (the control)."""
    from ad_core.data.io import read_image

    root = tmp_path_factory.mktemp("depth-data")
    cat = write_category(root, "widget", n_train=4, n_test_good=2, defects={"crack": 2}, size=(12, 16), gray=True)
    (cat / "uncertain" / "maybe").mkdir(parents=True)
    shutil.copy(cat / "test" / "good" / "000.png", cat / "uncertain" / "maybe" / "900.png")
    return root, {p.relative_to(cat).as_posix(): read_image(p) for p in cat.rglob("*.png")
                  if "ground_truth" not in p.parts}


@settings(max_examples=budget(30), **FUZZ)
@given(st.data())
def test_no_single_image_or_unscored_image_rescales_the_scored_ones(depth_category, data):
    """Training and test sets saved at any depths, a hot pixel anywhere, an uncertain image at 16 bits: each
    training image reads as its 8-bit control (a hot pixel saturating), and every other image reads as its
    control or is named -- itself or its whole set -- in the category's exceptions (said and recorded)."""
    from ad_core.data.io import BIT_DEPTHS, read_image
    from ad_core.data.layouts.mvtec import discover_category

    clean_root, control = depth_category
    root = fresh_dir()
    try:
        shutil.copytree(clean_root, root, dirs_exist_ok=True)
        cat = root / "widget"
        depth = {part: data.draw(st.sampled_from(BIT_DEPTHS), label=part) for part in ("train", "test", "uncertain")}
        if data.draw(st.booleans(), label="uncertain at 16 bits"):
            depth["uncertain"] = 16
        for rel in control:
            arr = control[rel].astype(np.uint32)
            b = depth[rel.split("/")[0]]
            Image.fromarray(((arr * (2**b - 1) + 127) // 255).astype(np.uint16)).save(cat / rel)
        hot = data.draw(st.none() | st.sampled_from(sorted(control)), label="hot pixel in")
        if hot is not None:
            arr = np.asarray(Image.open(cat / hot)).copy()
            y, x = data.draw(st.integers(0, 11)), data.draw(st.integers(0, 15))
            arr[y, x] = 65535
            Image.fromarray(arr).save(cat / hot)
        files = discover_category(root, "widget")
        named = files.bit_depth_exceptions
        assert files.bit_depth == depth["train"]
        for s in files.all_samples():
            got, want = read_image(s.path, s.bits).astype(int), control[s.relpath].astype(int)
            if s.relpath == hot:
                assert got[y, x] == 255
                got[y, x] = want[y, x]
            if s.relpath.startswith("train/"):
                assert np.array_equal(got, want), s.relpath
            elif not np.array_equal(got, want):
                assert s.relpath in named or f"{s.relpath.split('/')[0]} images" in named, (s.relpath, depth, named)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- issue 31: a damaged VisA split file ---------------------------------------------------------------
DAMAGE = ("duplicate", "flip-label", "swap-object", "mask-jpg", "mask-normal", "mask-other", "mask-empty", "drop")


@pytest.fixture(scope="module")
def visa_mini(tmp_path_factory):
    """A VisA miniature of 16x16 images (JPEG copies of its masks beside them), its split file's rows and each
    object's clean files."""
    root = write_visa(tmp_path_factory.mktemp("visa-mini"), size=SMALL)
    for png in root.glob("*/Data/Masks/Anomaly/*.png"):  # JPEG copies beside VisA's masks: found, yet refused
        for suffix in (".jpg", ".JPEG"):
            Image.open(png).save(png.with_suffix(suffix), format="JPEG")
    return root, read_rows(root), {obj: visa.discover(root, obj) for obj in OBJECTS}


def damage(draw, rows: list[list[str]]) -> list[list[str]]:
    """One to three random edits of the data rows (the header kept)."""
    head, body = rows[0], [list(r) for r in rows[1:]]
    normals = [r[3] for r in body if r[2] == "normal"]
    masks = [r[4] for r in body if r[4]]
    for kind in draw(st.lists(st.sampled_from(DAMAGE), min_size=1, max_size=3)):
        anomalies = [j for j, r in enumerate(body) if r[2] == "anomaly"]  # a mask's damage: on an anomaly, half
        pool = anomalies if kind.startswith("mask") and anomalies and draw(st.booleans()) else range(len(body))
        i = draw(st.sampled_from(pool))
        row = body[i]
        if kind == "duplicate":
            body.insert(draw(st.integers(0, len(body))), list(row))
        elif kind == "flip-label":
            row[2] = "anomaly" if row[2] == "normal" else "normal"
        elif kind == "swap-object":
            row[0] = OBJECTS[1 - OBJECTS.index(row[0])]
        elif kind == "mask-jpg":
            suffix = draw(st.sampled_from([".jpg", ".JPG", ".jpeg", ".JPEG"]))
            row[4] = f"{row[3].split('/')[0]}/Data/Masks/Anomaly/{Path(row[3]).stem}{suffix}"
        elif kind == "mask-normal":
            row[4] = draw(st.sampled_from(normals))
        elif kind == "mask-other":
            row[4] = draw(st.sampled_from(masks))
        elif kind == "mask-empty":
            row[4] = ""
        else:
            del body[i]
    return [head, *body]


def kept(clean_rows: list[list[str]], rows: list[list[str]]) -> set[str] | None:
    """The images an object's rows keep when every one is a clean row (or an anomaly's with its mask column
    emptied: VisA's own ``<stem>.png`` is then read) and none repeats; None when some row contradicts."""
    clean = {r[3]: r for r in clean_rows}
    seen: set[str] = set()
    for r in rows:
        c = clean.get(r[3])
        if c is None or r[3] in seen or (r != c and not (c[2] == "anomaly" and r == [*c[:4], ""])):
            return None
        seen.add(r[3])
    return seen


@settings(max_examples=budget(30), **FUZZ)
@given(st.data())
def test_a_damaged_split_file_reads_as_the_clean_one_or_is_refused_in_one_line(visa_mini, data):
    """Dropped rows only drop their images and an emptied mask column reads VisA's own mask; every other
    damage (a row repeated, a label flipped, an object swapped, a mask pointing at a JPEG, at a normal
    image or at another anomaly's mask) is one DatasetError of one line naming the split file."""
    root, clean_rows, clean = visa_mini
    rows = damage(data.draw, clean_rows)
    write_rows(root, rows)
    try:
        for obj in OBJECTS:
            images = kept([r for r in clean_rows[1:] if r[0] == obj], [r for r in rows[1:] if r[0] == obj])
            if images is None:
                want = None
            else:
                paths = {root / p for p in images}
                files = clean[obj]
                test_anomalous = [s for s in files.test_anomalous if s.path in paths]
                want = replace(files, train_good=[s for s in files.train_good if s.path in paths],
                               test_good=[s for s in files.test_good if s.path in paths], test_anomalous=test_anomalous,
                               defects=files.defects if test_anomalous else [])
            try:
                got = visa.discover(root, obj)
            except DatasetError as exc:
                message = str(exc)
                assert "\n" not in message and str(root / visa.SPLIT_FILE) in message, message
                assert want is None or not want.train_good or not want.test_good, f"{obj}: refused {message}"
            else:
                assert want is not None, f"{obj}: a contradicting split file was read without a word"
                assert got == want
    finally:
        write_rows(root, clean_rows)
