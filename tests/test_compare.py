"""``ad-repro compare``: never "holds" wrongly (NaN / inf), unusable inputs are a CompareError naming
the file, the tolerance is a finite number >= 0, and every compared number is counted (issue 22)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.evaluation.results import ClassResult, MethodResult, ScenarioResult
from experiments.gates.compare import CompareError, compare_folders, format_rows, summarise
from experiments.gates.goldens import compare_numbers, within

pytestmark = pytest.mark.fast

NAN, INF = float("nan"), float("inf")


def scenario_result(name: str = "clean") -> ScenarioResult:
    """A minimal scenario result: one method, two classes."""
    def cls(auroc: float) -> ClassResult:
        return ClassResult(12.5, [[10, 2], [3, 11]], {"image_auroc": auroc, "image_auprc": 0.9, "image_f1": 0.8,
                                                       "image_accuracy": 0.75, "pixel_auroc": 0.95, "pro": 0.7})

    padim = MethodResult("padim", None, {"brick": cls(0.9), "tissue": cls(0.8)}, {"brick": 12.5, "tissue": 12.5})
    return ScenarioResult(name, "a test scenario", {"seed": 42}, [padim])


def scenario(name: str = "clean") -> dict:
    """``scenario_result`` as results/<scenario>.json holds it (``ScenarioResult.to_json``)."""
    return scenario_result(name).to_json()


def run_folder(root: Path, **edits: object) -> Path:
    """A run folder with results/clean.json; ``edits``: ``brick_<number>=value`` planted in padim/brick."""
    result = scenario()
    for key, value in edits.items():
        cls, number = key.split("_", 1)
        result["methods"]["padim"]["per_class"][cls][number] = value
    (root / "results").mkdir(parents=True)
    (root / "results" / "clean.json").write_text(json.dumps(result))  # NaN / Infinity literals, as json writes them
    return seal(root)


def seal(root: Path) -> Path:
    """checksums.json over every results file, as the run that wrote them records it, and a provenance
    record of one dataset (the data digest ``compare`` checks)."""
    from conftest import seal_results

    seal_results(root)
    (root / "provenance.json").write_text(json.dumps({"format": 1, "data_digest": "0" * 64}))
    return root


def numbers_compared() -> int:
    """2 classes x every recorded number + the mean's."""
    from ad_core.metrics import recorded_names

    return 3 * len(recorded_names())


def test_identical_runs_hold_and_every_number_is_counted(tmp_path):
    a, b = run_folder(tmp_path / "a"), run_folder(tmp_path / "b")
    assert compare_folders(a, b) == []  # default: the numbers that differ, as before
    rows = compare_folders(a, b, every=True)
    assert len(rows) == numbers_compared() and all(r["holds"] and not r["differs"] for r in rows)
    assert summarise(rows) == f"{numbers_compared()} number(s) compared, 0 number(s) differ, 0 beyond tolerance: " \
                              "every number holds"
    assert format_rows(rows) == format_rows([])  # equal numbers are not tabled


@pytest.mark.parametrize("va, vb", [(0.9, NAN), (NAN, 0.9), (NAN, NAN), (0.9, INF), (-INF, 0.9), (INF, -INF)])
@pytest.mark.parametrize("tolerance", [None, 0.5, 0.0])
def test_nan_or_inf_against_anything_is_a_failing_row(tmp_path, va, vb, tolerance):
    a, b = run_folder(tmp_path / "a", brick_image_auroc=va), run_folder(tmp_path / "b", brick_image_auroc=vb)
    rows = compare_folders(a, b, tolerance)
    failing = [r for r in rows if not r["holds"]]
    assert [(r["entry"], r["number"]) for r in failing] == [("brick", "image_auroc")]
    assert "NOT the same within tolerance" in summarise(compare_folders(a, b, tolerance, every=True))
    assert any("| brick | image_auroc |" in line and line.endswith("| NO |") for line in format_rows(rows))


def test_same_infinity_holds(tmp_path):
    a, b = run_folder(tmp_path / "a", brick_threshold=INF), run_folder(tmp_path / "b", brick_threshold=INF)
    rows = compare_folders(a, b, every=True)
    assert all(r["holds"] for r in rows) and not any(r["differs"] for r in rows)


def test_within_and_compare_numbers_never_let_nan_hold():
    assert within(1.0, 1.0 + 1e-9, 1e-6) and not within(1.0, 1.1, 1e-6)
    assert not within(NAN, 1.0, 1.0) and not within(1.0, NAN, 1.0) and not within(NAN, NAN, 1.0)
    assert not within(1.0, 1.0, NAN)  # a NaN allowance holds nothing
    assert within(INF, INF, 0.0) and not within(INF, -INF, INF) and not within(1.0, INF, INF)
    # a relative tolerance times an infinite expected value must not allow everything
    assert [m[0] for m in compare_numbers({"threshold": INF}, {"threshold": 5.0}, {"threshold": {"rel": 0.1}})] == [
        "threshold"]
    assert compare_numbers({"threshold": -INF}, {"threshold": -INF}, {"threshold": {"rel": 0.1}}) == []


def test_cli_exits_1_with_a_failing_row_on_nan(tmp_path, capsys):
    a, b = run_folder(tmp_path / "a"), run_folder(tmp_path / "b", brick_pro=NAN)
    assert main(["compare", str(a), str(b), "--tolerance", "1"]) == 1
    out = capsys.readouterr().out
    assert "| clean | padim | brick | pro | 0.7 | nan | nan | 1 | NO |" in out and "1 beyond tolerance" in out


def write_b(tmp_path: Path, text: str) -> tuple[Path, Path, Path]:
    a, b = run_folder(tmp_path / "a"), tmp_path / "b"
    (b / "results").mkdir(parents=True)
    path = b / "results" / "clean.json"
    path.write_text(text)
    seal(b)
    return a, b, path


def bad_number(value: object) -> str:
    result = scenario()
    result["methods"]["padim"]["per_class"]["brick"]["image_auroc"] = value
    return json.dumps(result)


@pytest.mark.parametrize("text, what", [
    ('{"scenario": "clean", "methods": {', "is not complete JSON"),
    ("", "is empty"),
    ("[1, 2]", "the top level input should be a valid dictionary"),
    ('{"scenario": "clean"}', "field description is missing"),
    (bad_number("0.9"), "field methods.padim.per_class.brick.image_auroc must be a number or null, got str"),
    (bad_number([0.9]), "field methods.padim.per_class.brick.image_auroc must be a number or null, got list"),
    (bad_number(True), "field methods.padim.per_class.brick.image_auroc must be a number or null, got bool"),
    (json.dumps({**scenario(), "scenario": 3}), "field scenario input should be a valid string"),
    (json.dumps({**scenario(), "extra": 3}), "field extra is not a known field"),
    (json.dumps({**scenario(), "format": 2}), "format 2; this version of ad-repro reads format 1"),
    (json.dumps(scenario()).replace('"confusion": [[10, 2], [3, 11]]', '"confusion": [["10", 2], [3, 11]]', 1),
     "confusion must be [[TN, FP], [FN, TP]]"),
    (json.dumps(scenario()).replace('"confusion": [[10, 2], [3, 11]]', '"confusion": [[0, 0], [0, 0]]'),
     "cannot be derived"),
])
def test_malformed_results_file_is_a_compare_error_naming_it(tmp_path, text, what):
    a, b, path = write_b(tmp_path, text)
    for sides in ((a, b), (b, a)):
        with pytest.raises(CompareError) as exc:
            compare_folders(*sides)
        assert str(path) in str(exc.value) and what in str(exc.value)


def test_cli_says_what_is_wrong_without_a_traceback(tmp_path, capsys):
    a, b, path = write_b(tmp_path, bad_number("0.9"))
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ad-repro compare: {path}: ") and "Traceback" not in err


def test_a_folder_where_the_file_belongs_is_a_compare_error(tmp_path):
    a, b = run_folder(tmp_path / "a"), tmp_path / "b"
    (b / "results" / "clean.json").mkdir(parents=True)
    with pytest.raises(CompareError, match="clean.json: is a folder, not a regular file"):
        compare_folders(a, b)


def test_an_unreadable_file_is_a_compare_error(tmp_path, monkeypatch):
    a, b = run_folder(tmp_path / "a"), run_folder(tmp_path / "b")
    unreadable = b / "results" / "clean.json"
    import os

    real = os.open

    def refuse(path, *args, **kwargs):
        if Path(path) == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(CompareError, match="cannot be opened \\(Permission denied\\)") as exc:
        compare_folders(a, b)
    assert str(unreadable) in str(exc.value)


def test_not_utf8_is_a_compare_error(tmp_path):
    a, b, path = write_b(tmp_path, "")
    path.write_bytes(b"\xff\xfe{}")
    seal(b)
    with pytest.raises(CompareError, match="not UTF-8 text") as exc:
        compare_folders(a, b)
    assert str(path) in str(exc.value)


def test_missing_or_empty_folders_are_compare_errors(tmp_path):
    a = run_folder(tmp_path / "a")
    with pytest.raises(CompareError, match="missing does not exist"):
        compare_folders(a, tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CompareError, match="file is not a folder"):
        compare_folders(tmp_path / "file", a)
    (tmp_path / "empty" / "results").mkdir(parents=True)
    with pytest.raises(CompareError, match="holds no scenario results"):
        compare_folders(a, tmp_path / "empty")


def test_two_files_of_one_scenario_are_a_compare_error(tmp_path):
    a, b = run_folder(tmp_path / "a"), run_folder(tmp_path / "b")
    (b / "results" / "copy.json").write_text(json.dumps(scenario()))
    seal(b)
    with pytest.raises(CompareError, match="copy.json: field scenario is 'clean', not the file's name 'copy'"):
        compare_folders(a, b)


def golden_folder(root: Path, tolerances: dict | None = None, text: str | None = None) -> Path:
    from experiments.gates.goldens import entries

    root.mkdir(parents=True)
    tolerances = tolerances or {"image_auroc": {"abs": 0.01}}
    tolerances = {k: {"rule": "given", "why": "a test", **t} for k, t in tolerances.items()}
    g = {"scenario": "clean", "tolerances": tolerances,
         "methods": entries(scenario_result())}
    (root / "clean.json").write_text(text if text is not None else json.dumps(g))
    (root / "drift.json").write_text("{}")
    return root


def test_golden_side_holds_with_its_own_tolerances_and_rejects_bad_ones(tmp_path):
    a = run_folder(tmp_path / "a", brick_image_auroc=0.905)
    rows = compare_folders(a, golden_folder(tmp_path / "g1"))
    assert [(r["number"], r["holds"]) for r in rows] == [("image_auroc", True)]  # within the golden's 0.01
    for i, (tol, what) in enumerate([({"image_auroc": {"abs": NAN}}, "tolerances.image_auroc.abs"),
                                     ({"threshold": {"rel": -1}}, "tolerances.threshold.rel"),
                                     ({"pro": {"abs": "0.1"}}, "tolerances.pro.abs")]):
        g = golden_folder(tmp_path / f"bad{i}", tol)
        with pytest.raises(CompareError, match="must be a finite number >= 0|input should be a valid number") as exc:
            compare_folders(a, g)
        assert str(g / "clean.json") in str(exc.value) and what in str(exc.value)
    g = golden_folder(tmp_path / "broken", text='{"tolerances": ')
    with pytest.raises(CompareError, match="is not complete JSON") as exc:
        compare_folders(a, g)
    assert str(g / "clean.json") in str(exc.value)


@pytest.mark.parametrize("tolerance", [NAN, INF, -INF, -0.1, "0.1", True])
def test_tolerance_must_be_finite_and_non_negative(tmp_path, tolerance):
    a = run_folder(tmp_path / "a")
    with pytest.raises(CompareError, match=r"--tolerance must be a finite number >= 0, got "):
        compare_folders(a, a, tolerance)


def test_cli_rejects_a_nan_tolerance(tmp_path, capsys):
    a = run_folder(tmp_path / "a")
    assert main(["compare", str(a), str(a), "--tolerance", "nan"]) == 2
    assert "ad-repro compare: --tolerance must be a finite number >= 0, got nan" in capsys.readouterr().err
    assert main(["compare", str(a), str(a), "--tolerance", "0"]) == 0


def test_rows_count_differences_and_format_rows_can_table_only_failing_ones(tmp_path):
    a = run_folder(tmp_path / "a")
    b = run_folder(tmp_path / "b", brick_image_auroc=0.7, brick_pro=0.7 + 1e-9)
    rows = compare_folders(a, b, every=True)
    assert len(rows) == numbers_compared()
    assert [(r["number"], r["holds"]) for r in rows if r["differs"]] == [("image_auroc", False), ("pro", True)]
    assert summarise(rows).startswith(f"{numbers_compared()} number(s) compared, 2 number(s) differ, 1 beyond "
                                      "tolerance: NOT")
    differing = compare_folders(a, b)
    assert format_rows(differing) == format_rows(rows)  # the default table: the numbers that differ
    assert len(format_rows(rows)) == 2 + 2
    only = format_rows(rows, only_failing=True)
    assert len(only) == 2 + 1 and "| image_auroc |" in only[2] and not math.isnan(rows[0]["allowed"])
