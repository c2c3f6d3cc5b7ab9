"""A newcomer's own MVTec-layout folder (issue 22): run -> record a golden -> gate a rerun in CI, the
warnings a single category or a tiny test set earns, and comparing the scenarios two runs share."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from conftest import seal_results, write_category
from experiments.cli import main

pytestmark = pytest.mark.slow

BASE = ["--backbone", "efficientnet_lite0", "--weights", "package", "--no-progress", "--no-bootstrap"]


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("line-3")
    for name in ("bracket", "gasket"):
        write_category(root, name, n_train=8, n_test_good=5, defects={"crack": 4, "dent": 4}, size=(48, 48))
    return root


def run(data: Path, out: Path, *extra: str) -> int:
    return main(["run", "--data", str(data), "--out", str(out), "--scenarios", "clean", *BASE, *extra])


def test_record_a_golden_then_gate_a_rerun_exit_0_and_a_moved_number_exit_1(user_data, tmp_path, capsys):
    reference, golden, rerun = tmp_path / "reference", tmp_path / "golden", tmp_path / "rerun"
    assert run(user_data, reference) == 0
    assert main(["golden", "record", str(reference), str(golden)]) == 0
    files = sorted(golden.glob("*.json"))
    assert [p.name for p in files] == ["clean.json", "config.json"] and sum(p.stat().st_size for p in files) < 100_000
    recorded = json.loads(files[0].read_text())
    assert recorded["tolerances"]["image_auroc"]["rule"].startswith("max(3 / (5 x ")  # derived, with its reason
    # CI: the recorded settings, on the data as CI sees it, into a fresh folder
    assert main(["run", "--config", str(golden), "--data", str(user_data), "--out", str(rerun)]) == 0
    capsys.readouterr()
    assert main(["compare", str(golden), str(rerun)]) == 0
    assert "every number holds" in capsys.readouterr().out
    moved = json.loads((rerun / "results" / "clean.json").read_text())
    moved["methods"]["padim"]["per_class"]["gasket"]["image_auroc"] -= 0.3
    (rerun / "results" / "clean.json").write_text(json.dumps(moved))
    assert main(["compare", str(golden), str(rerun)]) == 2  # an edited result is refused, never compared
    assert "clean.json: does not match the checksum it was written with" in capsys.readouterr().err
    seal_results(rerun)  # as if the run had produced the moved number
    assert main(["compare", str(golden), str(rerun)]) == 1
    out = capsys.readouterr().out
    assert "| clean | padim | gasket | image_auroc |" in out and "1 beyond tolerance" in out


def test_one_category_skips_the_unified_scenarios_saying_why(user_data, tmp_path, caplog):
    out = tmp_path / "one"
    with caplog.at_level(logging.WARNING):
        code = main(["run", "--data", str(user_data), "--out", str(out), "--categories", "bracket",
                     "--scenarios", "clean", "unified", "absolute_unified", *BASE])
    assert code == 0
    assert "scenario unified skipped: one model over all classes needs two or more" in caplog.text
    assert "scenario absolute_unified skipped" in caplog.text
    assert sorted(p.stem for p in (out / "results").glob("*.json")) == ["clean"]


def test_a_tiny_test_set_is_called_anecdotal(tmp_path, caplog):
    data = tmp_path / "tiny"
    write_category(data, "washer", n_train=6, n_test_good=2, defects={"scratch": 4}, size=(40, 40))
    with caplog.at_level(logging.WARNING):
        assert run(data, tmp_path / "out", "--methods", "padim") == 0
    assert re.search(r"washer: the test split holds 2 normal and \d defective image\(s\).*anecdotal", caplog.text)


def test_compare_the_scenarios_two_runs_share(user_data, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(user_data, a) == 0
    assert main(["run", "--data", str(user_data), "--out", str(b), "--scenarios", "clean", "shift_no_adaptation",
                 *BASE]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 2
    assert "only in B ['shift_no_adaptation']" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--shared"]) == 0


def test_validation_without_anomalies_runs_to_the_end_with_the_normal_only_rule(tmp_path, capsys):
    """A line with no defect images at all, and one with too few to calibrate on: tau from the validation
    normals (normal-fpr), said in the results and the report; the ranking metrics of a one-label test
    set undefined with why, its accuracy (1 - false alarms) still given; bootstrap intervals included."""
    data = tmp_path / "line-4"
    write_category(data, "plain", n_train=10, n_test_good=6, defects={}, size=(48, 48))
    write_category(data, "few", n_train=10, n_test_good=6, defects={"crack": 3}, size=(48, 48))
    out = tmp_path / "out"
    args = ["run", "--data", str(data), "--out", str(out), "--scenarios", "clean", "--backbone", "efficientnet_lite0",
            "--weights", "package", "--no-progress"]
    assert main(args) == 0
    result = json.loads((out / "results" / "clean.json").read_text())
    for method in ("patchcore", "padim", "dn2"):
        plain, few = (result["methods"][method]["per_class"][c] for c in ("plain", "few"))
        assert plain["threshold_rule"].startswith("normal-fpr@0.01 (the F1 rule cannot apply: the validation set "
                                                  "has no anomalous image)")
        assert plain["image_auroc"] is None and plain["image_f1_max"] is None and plain["pixel_ap"] is None
        assert "only normal ones" in plain["image_metrics_absent"] and 0 <= plain["image_accuracy"] <= 1
        assert few["threshold_rule"].startswith("normal-fpr@0.01") and few["image_auroc"] is not None
        assert "image_f1_max" in few["ci95"] and few["confusion"][1] != [0, 0]
    report = (out / "report.md").read_text()
    assert "τ set by: few: normal-fpr@0.01" in report and "; plain: normal-fpr@0.01" in report
    assert "Image ranking metrics (AUROC, AUPRC, F1, F1-max) undefined: Image AUROC needs both" in report
    capsys.readouterr()
    assert main([*args[:4], str(tmp_path / "f1"), *args[5:], "--threshold", "f1"]) == 2  # asked for, cannot apply
    assert "--threshold f1 cannot be used: the validation split of few, plain holds no anomalous image" in \
        capsys.readouterr().err
    assert not (tmp_path / "f1" / "splits").exists(), "refused before any write"
