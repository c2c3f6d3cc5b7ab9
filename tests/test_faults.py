"""Faults a user meets (issue 19): every case asserts its outcome -- recomputed with a line naming the
file, a clear error naming the path (exit 2), or numbers identical to an intact run -- never "no crash".

One small reference run (two embedded classes at 64 px, the clean scenario, all three methods) is
made once; each case copies its folder, plants one fault, runs again and holds the numbers against it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ad_core.data.embedded import EmbeddedSpec, make_embedded_dataset
from conftest import run_numbers as numbers
from conftest import seal_results
from experiments.cli import main
from experiments.definition.config import RunConfig, machine_settings
from experiments.study import run_study

pytestmark = pytest.mark.faults

SCENARIOS = ["clean"]


def make_data(root: Path) -> Path:
    return make_embedded_dataset(root, EmbeddedSpec(n_train_good=10, n_test_good=4, n_per_defect=1, size=96),
                                 categories=("brick", "coffee"))


def config(out: Path, data: Path, **kw) -> RunConfig:
    return RunConfig(out=out, data=str(data), backbone="efficientnet_lite0", weights="package", progress=False,
                     bootstrap=False, scenarios=kw.pop("scenarios", SCENARIOS), image_size=64, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    data = make_data(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("reference")
    run_study(config(out, data))
    return out, data, numbers(out)


@pytest.fixture
def twin(reference, tmp_path):
    """A copy of the reference run's folder (caches and all), to plant a fault in."""
    out = tmp_path / "twin"
    shutil.copytree(reference[0], out)
    return out


def rerun(out: Path, data: Path, caplog, **kw) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_study(config(out, data, **kw))
    return "\n".join(r.getMessage() for r in caplog.records)


def recovers(twin: Path, data: Path, caplog, want: dict, *lines: str) -> None:
    """Rerun into ``twin``: the run says each of ``lines`` and its numbers equal the intact run's."""
    said = rerun(twin, data, caplog)
    for line in lines:
        assert line in said, (line, said)
    assert numbers(twin) == want


def flip_bit(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 + 3] ^= 0x40  # in the bulk of the values: an exponent bit of a float32 (little-endian)
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a cache entry\xff" * 7)


DAMAGE = {"bit flip": flip_bit, "truncated": truncate, "garbage": garbage}


# -- 1. verified caches: a damaged entry is never used -------------------------------------------
def unchecksummed(path: Path) -> None:
    """An entry as an older version wrote it (no checksum), with altered values."""
    import torch

    maps = torch.load(path, weights_only=True)["maps"]
    torch.save({k: v * 1.5 for k, v in maps.items()}, path)


@pytest.mark.parametrize("damage", [*DAMAGE, "unchecksummed"])
def test_a_damaged_feature_entry_is_recomputed_with_its_name(reference, twin, caplog, damage):
    out, data, want = reference
    entry = sorted((twin / "cache" / "features").rglob("*.pt"))[3]
    {**DAMAGE, "unchecksummed": unchecksummed}[damage](entry)
    shutil.rmtree(twin / "models")  # so that every feature is read again
    shutil.rmtree(twin / "cache" / "scores")
    recovers(twin, data, caplog, want, f"features: {entry}", "recomputing")


@pytest.mark.parametrize("pattern", ["*_maps.npy", "*_test.npz"])  # anomaly maps, image scores
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_score_entry_is_rescored_with_its_name(reference, twin, caplog, damage, pattern):
    out, data, want = reference
    entry = sorted((twin / "cache" / "scores").rglob(pattern))[0]
    DAMAGE[damage](entry)
    recovers(twin, data, caplog, want, f"scores: {entry}", "rescoring")


def test_altered_scores_inside_a_valid_entry_fail_their_checksum(reference, twin, caplog):
    out, data, want = reference
    entry = sorted((twin / "cache" / "scores").glob("padim_*/*_test.npz"))[0]
    with np.load(entry) as z:
        content = {k: z[k] for k in z.files}
    content["scores"] = content["scores"] + 0.25  # a well-formed file whose numbers were edited
    with open(entry, "wb") as fh:
        np.savez(fh, **content)
    recovers(twin, data, caplog, want, f"scores: {entry} fails its checksum")


MODEL_FILES = ["patchcore_brick_clean.npy", "patchcore_brick_clean.json", "padim_coffee_clean.pt",
               "dn2_brick_clean.npz"]


@pytest.mark.parametrize("name", MODEL_FILES)
@pytest.mark.parametrize("damage", ["bit flip", "truncated"])
def test_a_damaged_model_file_is_refit_with_its_name(reference, twin, caplog, name, damage):
    out, data, want = reference
    path = twin / "models" / name
    if name.endswith(".json") and damage == "bit flip":  # the parameters file: a hyperparameter edited by hand
        params = json.loads(path.read_text())
        params["k"] = 1
        path.write_text(json.dumps(params))
    else:
        DAMAGE[damage](path)
    recovers(twin, data, caplog, want, f"models: {path} fails its checksum", "refitting")


def test_a_malformed_fit_record_is_refit_with_its_name(reference, twin, caplog):
    out, data, want = reference
    record = twin / "models" / "padim_brick_clean.fit.json"
    record.write_text("{ not json")
    recovers(twin, data, caplog, want, f"models: {record} cannot be read")


def test_a_hand_edited_result_of_a_scenario_not_rerun_is_left_out_saying_so(reference, tmp_path, caplog):
    out, data, _ = reference
    twin = tmp_path / "twin"
    shutil.copytree(out, twin)
    run_study(config(twin, data, scenarios=["shift_no_adaptation"]))  # a second scenario in the folder
    path = twin / "results" / "shift_no_adaptation.json"
    edited = json.loads(path.read_text())
    edited["methods"]["padim"]["per_class"]["brick"]["image_auroc"] = 1.0
    path.write_text(json.dumps(edited, indent=2) + "\n")
    said = rerun(twin, data, caplog)  # reruns clean only
    assert f"results: {path}: does not match the checksum" in said and "left out" in said
    summary = (twin / "results" / "summary.csv").read_text()
    assert "shift_no_adaptation" not in summary and "clean," in summary
    assert "shift_no_adaptation" not in (twin / "report.md").read_text().split("## Where the time went")[0]


# -- 1. content-keyed caches: what changed is recomputed, and said ---------------------------------
def data_twin(reference, tmp_path) -> tuple[Path, Path]:
    """A copy of the data and a run on it (the folder the change is made to)."""
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    out = tmp_path / "run"
    run_study(config(out, data))
    return out, data


def fresh_numbers(data: Path, tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "fresh"
    run_study(config(out, data))
    return numbers(out)


def test_a_test_image_replaced_in_place_is_rescored_and_said(reference, tmp_path, caplog):
    out, data = data_twin(reference, tmp_path)
    image = data / "brick" / "test" / "good" / "001.png"
    shutil.copy(data / "coffee" / "test" / "good" / "001.png", image)  # another picture under the same name
    said = rerun(out, data, caplog)
    assert "images changed, 1 edited (brick/test/good/001.png)" in said and "rescoring" in said
    assert numbers(out) == fresh_numbers(data, tmp_path)


def test_a_training_image_edited_in_place_refits_exactly_its_models(reference, tmp_path, caplog):
    from ad_core.data.io import read_image, write_image

    out, data = data_twin(reference, tmp_path)
    splits = json.loads((out / "splits" / "coffee.json").read_text())
    name = splits["train"][0]
    path = data / "coffee" / name
    write_image(path, 255 - read_image(path))
    said = rerun(out, data, caplog)
    assert f"training images changed, 1 edited (coffee/{name})" in said
    refit = {line.split(":")[1].strip() for line in said.splitlines() if "training images changed" in line}
    assert refit == {"patchcore_coffee_clean", "padim_coffee_clean", "dn2_coffee_clean"}  # brick's are kept
    assert numbers(out) == fresh_numbers(data, tmp_path)


def test_an_added_training_image_redoes_the_splits_and_says_so(reference, tmp_path, caplog):
    out, data = data_twin(reference, tmp_path)
    src = data / "brick" / "train" / "good" / "000.png"
    shutil.copy(src, data / "brick" / "train" / "good" / "999.png")
    said = rerun(out, data, caplog)
    assert "splits redone" in said and "1 added (train/good/999.png)" in said
    assert numbers(out) == fresh_numbers(data, tmp_path)


def test_a_removed_test_image_redoes_the_splits_and_says_so(reference, tmp_path, caplog):
    out, data = data_twin(reference, tmp_path)
    (data / "coffee" / "test" / "good" / "002.png").unlink()
    said = rerun(out, data, caplog)
    assert "1 removed (test/good/002.png)" in said
    assert numbers(out) == fresh_numbers(data, tmp_path)


def test_the_shifted_copy_is_checked_against_its_sources_and_its_own_bytes(reference, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    out, shift = tmp_path / "run", ["shift_no_adaptation"]
    run_study(config(out, data, scenarios=shift))
    want = numbers(out)
    shifted = out / "data" / f"{data.name}-shift" / "brick" / "test" / "good" / "001.png"
    flip_bit(shifted)
    said = rerun(out, data, caplog, scenarios=shift)
    assert "shifted copy of brick: 1 shifted file(s) altered (test/good/001.png): rewritten" in said
    assert numbers(out) == want
    source = data / "coffee" / "test" / "good" / "002.png"
    shutil.copy(data / "brick" / "test" / "good" / "002.png", source)
    said = rerun(out, data, caplog, scenarios=shift)
    assert "shifted copy of coffee: 1 source image(s) edited (test/good/002.png): rewritten" in said
    fresh = tmp_path / "fresh"
    run_study(config(fresh, data, scenarios=shift))
    assert numbers(out) == numbers(fresh)


def test_a_built_in_dataset_copy_is_checked_and_rebuilt_saying_so(tmp_path, caplog):
    root = make_data(tmp_path / "embedded")
    image = root / "brick" / "train" / "good" / "002.png"
    intact = image.read_bytes()
    truncate(image)
    with caplog.at_level(logging.WARNING):
        make_data(tmp_path / "embedded")
    assert "1 file(s) edited, damaged, added or removed (brick/train/good/002.png): rebuilt" in caplog.text
    assert image.read_bytes() == intact


def test_a_rerun_of_an_intact_folder_recomputes_nothing_and_says_nothing(reference, twin, caplog):
    out, data, want = reference
    said = rerun(twin, data, caplog)
    assert [line for line in said.splitlines() if "anecdotal" not in line] == []  # (4 test images: said)
    assert numbers(twin) == want
    timings = json.loads((twin / "timings.json").read_text())
    assert timings["features_computed"] == 0


# -- 3. provenance and exact re-runs ---------------------------------------------------------------
def test_provenance_records_what_made_the_numbers(reference):
    out, data, _ = reference
    record = json.loads((out / "provenance.json").read_text())
    for key in ("ad_repro", "git", "python", "libraries", "cpu", "device", "threads", "executor", "knn_backend",
                "data_root", "data_digest", "data_files"):
        assert key in record, key
    assert record["knn_backend"] == "exact" and record["device"] == "cpu" and record["data_root"] == str(data)
    on_disk = [p for c in ("brick", "coffee") for p in (data / c).rglob("*.png") if "ground_truth" not in p.parts]
    assert record["data_files"] == len(on_disk) == 38 and len(record["data_digest"]) == 64
    assert record["libraries"]["torch"] != "absent" and "bfloat16_products" in record["cpu"]


def test_run_config_re_runs_a_recorded_run_exactly(reference, tmp_path, capsys):
    out, data, want = reference
    new = tmp_path / "again"
    assert main(["run", "--config", str(out / "run_config.json"), "--out", str(new)]) == 2  # where is the data?
    assert "the recorded run read a --data folder of its machine, which is not followed" in capsys.readouterr().err
    assert not new.exists() or not any(new.iterdir()), "refused before any write"
    assert main(["run", "--config", str(out / "run_config.json"), "--data", str(data), "--out", str(new)]) == 0
    assert numbers(new) == want
    recorded, again = (json.loads((p / "config.json").read_text()) for p in (out, new))
    study = [k for k in recorded if k not in machine_settings()]  # where it ran came from this command line
    assert {k: recorded[k] for k in study} == {k: again[k] for k in study} and again["out"] == str(new)


def test_compare_prints_provenance_first_and_refuses_other_data(reference, tmp_path, capsys):
    out, data, _ = reference
    other = tmp_path / "other"
    shutil.copytree(out, other)
    record = json.loads((other / "provenance.json").read_text())
    record["data_digest"] = "0" * 64
    record["threads"] = 99
    (other / "provenance.json").write_text(json.dumps(record))
    assert main(["compare", str(out), str(other)]) == 2
    captured = capsys.readouterr()
    assert "threads: " in captured.out and "99" in captured.out
    assert "different data" in captured.err and "--different-data" in captured.err
    assert main(["compare", str(out), str(other), "--different-data"]) == 0


# -- 4. compare never says "holds" wrongly ---------------------------------------------------------
def test_compare_fails_a_nan_and_refuses_bad_input(reference, tmp_path, capsys):
    out, _, _ = reference
    other = tmp_path / "nan"
    shutil.copytree(out / "results", other / "results")
    shutil.copy(out / "provenance.json", other / "provenance.json")
    clean = json.loads((other / "results" / "clean.json").read_text())
    clean["methods"]["padim"]["per_class"]["brick"]["image_auroc"] = float("nan")
    (other / "results" / "clean.json").write_text(json.dumps(clean))
    seal_results(other)  # as if a run had produced the NaN
    assert main(["compare", str(out), str(other)]) == 1
    assert main(["compare", str(out), str(other), "--tolerance", "nan"]) == 2
    assert main(["compare", str(out), str(other), "--tolerance", "-1"]) == 2
    (other / "results" / "clean.json").write_text("{ broken")
    seal_results(other)
    assert main(["compare", str(out), str(other)]) == 2
    assert str(other / "results" / "clean.json") in capsys.readouterr().err


# -- 5. paths, files, disks ------------------------------------------------------------------------
def test_output_files_follow_the_umask(reference):
    out, _, _ = reference
    old = os.umask(0o022)
    os.umask(old)
    want = 0o666 & ~old
    for path in [out / "results" / "clean.json", out / "run_config.json", *list((out / "models").glob("*"))[:3]]:
        assert path.stat().st_mode & 0o777 == want, path


def test_a_full_disk_is_one_line_exit_2_and_the_run_resumes_after(reference, tmp_path, capsys, monkeypatch):
    import experiments.execution.cache
    from ad_core.data import io

    _, data, _ = reference
    real, calls = io.atomic_open, {"n": 0}

    def filling(path, mode="wb"):
        calls["n"] += 1
        if calls["n"] == 40:  # mid-run: after some features, before the models
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, mode)

    def argv(out: Path) -> list[str]:
        return ["run", "--data", str(data), "--out", str(out), "--backbone", "efficientnet_lite0", "--weights",
                "package", "--scenarios", "clean", "--no-bootstrap", "--no-progress"]

    target = tmp_path / "full"
    for module in (io, experiments.execution.cache):  # the feature store binds the writer at import
        monkeypatch.setattr(module, "atomic_open", filling)
    assert main(argv(target)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err and str(target) in err
    for module in (io, experiments.execution.cache):
        monkeypatch.setattr(module, "atomic_open", real)
    assert main(argv(target)) == 0  # space freed: the same command resumes
    assert main(argv(tmp_path / "intact")) == 0
    assert numbers(target) == numbers(tmp_path / "intact")


@pytest.mark.parametrize("where", ["/proc/ad-repro-out", "/proc/version/out"])  # not writable, even by root
def test_an_unwritable_out_is_one_line_exit_2_naming_it(reference, capsys, where):
    _, data, _ = reference
    assert main(["run", "--data", str(data), "--out", where, "--backbone", "efficientnet_lite0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and where in err and "--out" in err


def test_a_category_cannot_leave_the_data_folder(reference, tmp_path, capsys):
    out, data, _ = reference
    target = tmp_path / "escape"
    assert main(["run", "--data", str(data), "--out", str(target), "--categories", "../brick"]) == 2
    assert "--categories" in capsys.readouterr().err
    assert not target.exists() or not any(target.iterdir())


def test_a_corrupt_image_is_one_line_exit_2_naming_it(reference, tmp_path, capsys):
    _, data, _ = reference
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    image = broken / "brick" / "train" / "good" / "003.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(["run", "--data", str(broken), "--out", str(tmp_path / "out"), "--backbone", "efficientnet_lite0",
                 "--weights", "package", "--scenarios", "clean", "--no-bootstrap", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(image) in err and err.count("\n") == 0


def test_repeated_seeds_and_an_out_that_is_a_file_are_refused(reference, tmp_path, capsys):
    _, data, _ = reference
    a_file = tmp_path / "file"
    a_file.write_text("x")
    base = ["run", "--data", str(data), "--backbone", "efficientnet_lite0", "--weights", "package"]
    assert main([*base, "--out", str(tmp_path / "s"), "--seeds", "42", "42"]) == 2
    assert "seed 42 is repeated" in capsys.readouterr().err
    assert main([*base, "--out", str(a_file)]) == 2
    assert f"--out '{a_file}': is a file" in capsys.readouterr().err and a_file.read_text() == "x"


# -- 6. data hygiene -------------------------------------------------------------------------------
def hygiene(data: Path, caplog) -> str:
    from ad_core.data.layouts.mvtec import discover_category
    from experiments.execution.prepare import check_hygiene

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        files = discover_category(data, "brick")
        check_hygiene(files)
    return "\n".join(r.getMessage() for r in caplog.records)


def test_a_test_image_equal_to_a_training_image_is_named(reference, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    shutil.copy(data / "brick" / "train" / "good" / "004.png", data / "brick" / "test" / "good" / "000.png")
    said = hygiene(data, caplog)
    assert "1 test image(s) have the content of a training image (test/good/000.png = train/good/004.png)" in said


def test_one_image_with_two_labels_is_named(reference, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    defect = sorted(p for p in (data / "brick" / "test").iterdir() if p.name != "good")[0]
    shutil.copy(next(defect.glob("*.png")), data / "brick" / "test" / "good" / "001.png")
    said = hygiene(data, caplog)
    assert "1 image(s) carry two labels" in said and "test/good/001.png" in said


@pytest.mark.parametrize("kind", ["dangling", "looping"])
def test_skipped_symbolic_links_are_named(reference, tmp_path, caplog, kind):
    data = tmp_path / "data"
    shutil.copytree(reference[1], data)
    link = data / "brick" / "train" / "good" / "zz.png"
    if kind == "dangling":
        link.symlink_to(tmp_path / "nowhere.png")
    else:
        link.symlink_to(link)
    said = hygiene(data, caplog)
    assert "skipped 1 symbolic link(s)" in said and "zz.png" in said


def test_an_image_level_dataset_gets_no_missing_mask_warning(tmp_path, caplog):
    from ad_core.data.layouts.mvtec import discover_category
    from conftest import write_category

    write_category(tmp_path, "cells", masks=False)
    shutil.rmtree(tmp_path / "cells" / "ground_truth", ignore_errors=True)
    with caplog.at_level(logging.WARNING):
        discover_category(tmp_path, "cells", image_level=True)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        discover_category(tmp_path, "cells")
    assert "no ground_truth/ folder" in caplog.text
