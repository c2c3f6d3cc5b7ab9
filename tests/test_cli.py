"""The ``ad-repro`` command line: ``prepare``, option checks, help, errors without tracebacks."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main

pytestmark = pytest.mark.fast


@pytest.mark.slow
def test_prepare_default_builds_embedded_dataset_splits_and_shift(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dataset embedded" in text
    for category in ("coffee", "brick", "tissue"):
        assert f"{category:<12}     40     10      6      12      14" in text
        splits = json.loads((out / "splits" / f"{category}.json").read_text())
        assert splits["counts"] == {"train": 40, "val_normal": 10, "val_anomalous": 6,
                                    "test_normal": 12, "test_anomalous": 14}
        log = json.loads((out / "data" / "embedded-shift" / category / "shift_params.json").read_text())
        assert len(log["images"]) == 50 + 12 + 20


def test_prepare_user_data_and_refuse_to_mix_seeds(make_category, tmp_path, capsys):
    cat = make_category(name="widget", n_train=10, defects={"crack": 5})
    out = tmp_path / "out"
    assert main(["prepare", "--data", str(cat.parent), "--out", str(out)]) == 0
    assert (out / "splits" / "widget.json").is_file()
    assert (out / "data" / "data-shift" / "widget" / "train" / "good" / "000.png").is_file()
    assert main(["prepare", "--data", str(cat.parent), "--out", str(out)]) == 0  # rerun: same
    assert main(["prepare", "--data", str(cat.parent), "--out", str(out), "--seed", "7"]) == 2
    assert "differ from the ones seed 7 gives" in capsys.readouterr().err


def test_bad_data_gets_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["prepare", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--categories", "--out", "--seed"):
        assert option in text


def test_user_folder_named_like_a_builtin_lists_its_own_categories(make_category, tmp_path):
    from experiments.execution.plan import resolve_layout

    cat = make_category(name="widget")
    elpv_named = cat.parent.rename(tmp_path / "elpv")
    assert resolve_layout(elpv_named, elpv_named, "elpv")[1] == ["widget"]
    assert resolve_layout(None, elpv_named, "elpv")[1] == ["elpv_mono", "elpv_poly"]


@pytest.mark.parametrize("option,value", [("--threads", "0"), ("--workers", "-1"), ("--threads", "two")])
def test_thread_and_worker_counts_must_be_positive(option, value, tmp_path, capsys):
    try:  # a number out of bounds: the declared check; not a number: argparse's type
        code = main(["run", option, value, "--out", str(tmp_path / "o")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert f"{option} {value}: must be a whole number >= 1" in err or f"argument {option}: invalid int value" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written
