"""The golden_regression fixture: pytest-regressions' workflow (its flags, its .obtained file, its
messages) on the project's golden format, run in an inner pytest (pytester) as a user's suite would."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent

OWN_TEST = '''
import json, os

def test_numbers(golden_regression):
    numbers = json.loads(os.environ["NUMBERS"])
    golden_regression.check_numbers(numbers, "golden/mine/clean.json",
                                    tolerances={"image_auroc": {"abs": 0.01, "why": "one pair of 10 x 10"}})
'''


def numbers(auroc: float = 0.9, pro: float | None = 0.7) -> str:
    return json.dumps({"m": {"widget": {"image_auroc": auroc, "pro": pro}, "mean": {"image_auroc": auroc}}})


@pytest.fixture
def own_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_own=OWN_TEST)
    return pytester


def run(suite: pytest.Pytester, monkeypatch, values: str, *flags: str) -> pytest.RunResult:
    monkeypatch.setenv("NUMBERS", values)
    return suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", *flags)


def test_first_run_writes_the_golden_and_fails_then_holds(own_suite, monkeypatch):
    golden = own_suite.path / "golden" / "mine" / "clean.json"
    first = run(own_suite, monkeypatch, numbers())
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*File not found in data directory, created:*"])
    written = json.loads(golden.read_text())
    assert written["methods"]["m"]["widget"] == {"image_auroc": 0.9, "pro": 0.7}
    assert written["tolerances"]["image_auroc"]["why"] == "one pair of 10 x 10"
    assert written["tolerances"]["pro"] == {"abs": 0, "rule": "exact", "why": "no tolerance given by the test"}
    run(own_suite, monkeypatch, numbers(auroc=0.905)).assert_outcomes(passed=1)  # within 0.01
    assert not list(golden.parent.glob("*.obtained*")), "a held golden leaves no .obtained file"


def test_a_moved_number_fails_with_every_move_and_leaves_the_obtained_file(own_suite, monkeypatch):
    golden = own_suite.path / "golden" / "mine" / "clean.json"
    run(own_suite, monkeypatch, numbers())
    before = golden.read_bytes()
    moved = run(own_suite, monkeypatch, numbers(auroc=0.95, pro=None))
    moved.assert_outcomes(failed=1)
    text = moved.stdout.str()
    assert "m/widget/image_auroc: expected 0.9, got 0.95 (diff +0.05, allowed 0.01)" in text
    assert "m/widget/pro: expected 0.7, got None" in text  # a number that became null is a move
    assert "m/mean/image_auroc" in text and "3 number(s) of clean beyond the tolerances" in text
    obtained = golden.with_name("clean.obtained.json")
    assert json.loads(obtained.read_text())["methods"]["m"]["widget"] == {"image_auroc": 0.95, "pro": None}
    assert golden.read_bytes() == before, "without a flag the golden is never rewritten"


def test_force_regen_rewrites_and_fails_regen_all_rewrites_and_passes(own_suite, monkeypatch):
    golden = own_suite.path / "golden" / "mine" / "clean.json"
    run(own_suite, monkeypatch, numbers())
    forced = run(own_suite, monkeypatch, numbers(auroc=0.8), "--force-regen")
    forced.assert_outcomes(failed=1)
    forced.stdout.fnmatch_lines(["*Files differ and --force-regen set, regenerating file at:*"])
    assert json.loads(golden.read_text())["methods"]["m"]["widget"]["image_auroc"] == 0.8
    run(own_suite, monkeypatch, numbers(auroc=0.8)).assert_outcomes(passed=1)
    run(own_suite, monkeypatch, numbers(auroc=0.6), "--regen-all").assert_outcomes(passed=1)
    assert json.loads(golden.read_text())["methods"]["m"]["widget"]["image_auroc"] == 0.6


def test_a_damaged_golden_fails_naming_the_file_and_the_field(own_suite, monkeypatch):
    golden = own_suite.path / "golden" / "mine" / "clean.json"
    run(own_suite, monkeypatch, numbers())
    record = json.loads(golden.read_text())
    record["methods"]["m"]["widget"]["image_auroc"] = "0.9"
    golden.write_text(json.dumps(record))
    damaged = run(own_suite, monkeypatch, numbers())
    damaged.assert_outcomes(failed=1)
    damaged.stdout.fnmatch_lines(["*clean.json: field methods.m.widget.image_auroc must be a number or null*"])


def test_the_projects_result_check_derives_tolerances_and_keeps_nulls(pytester, monkeypatch):
    """check_result on a ScenarioResult writes the format ad-repro golden record writes."""
    pytester.makepyfile(test_result='''
import os
from tests.test_goldens import result

def test_result(golden_regression):
    golden_regression.check_result(result(auroc=float(os.environ["AUROC"]), pro=None), "golden/x-y",
                                   dataset="x", backbone="y")
''')
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    for auroc, outcome in (("0.9", "failed"), ("0.9", "passed"), ("0.95", "failed")):
        monkeypatch.setenv("AUROC", auroc)
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist").assert_outcomes(**{outcome: 1})
    golden = json.loads((pytester.path / "golden" / "x-y" / "clean.json").read_text())
    assert golden["format"] == 1 and (golden["dataset"], golden["backbone"]) == ("x", "y")
    assert golden["methods"]["patchcore"]["a"]["pro"] is None
    assert golden["tolerances"]["image_auroc"]["rule"].startswith("max(3 / (12 x 14)")


def test_the_readme_example_runs_as_written(pytester, monkeypatch):
    """golden/README.md's example is a user's test file: first run records, second holds."""
    text = (ROOT / "golden" / "README.md").read_text()
    example = re.search(r"```python\n(# tests/test_my_model.py.*?)```", text, re.S).group(1)
    assert len(example.strip().splitlines()) <= 10
    pytester.makepyfile(test_my_model=example)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist").assert_outcomes(failed=1)
    assert (pytester.path / "golden" / "my-model" / "clean.json").is_file()
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist").assert_outcomes(passed=1)


def test_the_regeneration_flags_are_pytest_regressions_own(pytester):
    """Without pytest-regressions' plugin no --force-regen / --regen-all exists: the project registers none."""
    with_plugin = pytester.runpytest_subprocess("--help").stdout.str()
    assert "--force-regen" in with_plugin and "--regen-all" in with_plugin
    without = pytester.runpytest_subprocess("-p", "no:regressions", "--help").stdout.str()
    assert "--force-regen" not in without and "--regen-all" not in without
    conftest = (ROOT / "conftest.py").read_text()
    assert "addoption" not in conftest


# -- issue 31: a read-only golden folder, NaN, the advice for an unreadable golden ---------------
def read_only(folder: Path) -> None:
    """``folder`` and its files made read-only (a CI checkout, a package's data)."""
    for p in [*folder.iterdir(), folder]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def run_unprivileged(suite: pytest.Pytester, monkeypatch, values: str, *flags: str) -> pytest.RunResult:
    """``run`` where permission bits hold: as root, the inner pytest runs without CAP_DAC_OVERRIDE
    (setpriv), so a read-only folder is read-only to it as to a CI user."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: a read-only folder cannot be made read-only here")
        monkeypatch.setattr(suite, "_getpytestargs",
                            lambda: ("setpriv", "--bounding-set=-dac_override", sys.executable, "-mpytest"))
    return run(suite, monkeypatch, values, *flags)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def recorded_read_only(own_suite, monkeypatch) -> tuple[Path, dict[str, bytes]]:
    """The suite's golden recorded, then its folder made read-only: (folder, its files' bytes)."""
    folder = own_suite.path / "golden" / "mine"
    run(own_suite, monkeypatch, numbers())
    before = tree(folder)
    read_only(folder)
    return folder, before


def test_a_read_only_golden_folder_that_holds_passes_and_writes_nothing(own_suite, monkeypatch):
    folder, before = recorded_read_only(own_suite, monkeypatch)
    try:
        held = run_unprivileged(own_suite, monkeypatch, numbers(auroc=0.905))
        held.assert_outcomes(passed=1)
        forced = run_unprivileged(own_suite, monkeypatch, numbers(auroc=0.905), "--force-regen")
        forced.assert_outcomes(passed=1)  # --force-regen rewrites a differing golden only
        assert tree(folder) == before
    finally:
        folder.chmod(0o755)


def test_a_moved_number_in_a_read_only_folder_fails_naming_the_obtained_file_in_a_temp_folder(own_suite, monkeypatch):
    folder, before = recorded_read_only(own_suite, monkeypatch)
    try:
        moved = run_unprivileged(own_suite, monkeypatch, numbers(auroc=0.95))
    finally:
        folder.chmod(0o755)
    moved.assert_outcomes(failed=1)
    text = moved.stdout.str()
    assert "PermissionError" not in text and "m/widget/image_auroc: expected 0.9, got 0.95" in text
    found = re.search(r"\(obtained: (\S+clean\.obtained\.json), in pytest's temporary folder: (\S+) is not writable\)",
                      text)
    assert found, text
    obtained = Path(found.group(1))
    assert found.group(2) == "golden/mine"  # the folder as the test names it
    assert str(obtained).startswith(str(own_suite.path / "runpytest-"))  # the inner run's --basetemp
    assert json.loads(obtained.read_text())["methods"]["m"]["widget"]["image_auroc"] == 0.95
    assert tree(folder) == before


def test_a_moved_number_in_a_writable_folder_still_leaves_the_obtained_file_beside_it(own_suite, monkeypatch):
    golden = own_suite.path / "golden" / "mine" / "clean.json"
    run(own_suite, monkeypatch, numbers())
    moved = run(own_suite, monkeypatch, numbers(auroc=0.95))
    moved.assert_outcomes(failed=1)
    assert "(obtained: golden/mine/clean.obtained.json):" in moved.stdout.str()
    assert golden.with_name("clean.obtained.json").is_file()
    run(own_suite, monkeypatch, numbers()).assert_outcomes(passed=1)
    assert not golden.with_name("clean.obtained.json").exists(), "a later run that holds removes the stale file"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_nan_or_infinite_number_is_refused_naming_it_before_anything_is_written(own_suite, monkeypatch, value):
    values = numbers().replace('"pro": 0.7', f'"pro": {value}')
    refused = run(own_suite, monkeypatch, values)
    refused.assert_outcomes(failed=1)
    inf = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[value]
    refused.stdout.fnmatch_lines([f"E * ValueError: golden/mine/clean.json: m/widget/pro is {inf}, not a finite "
                                  "number: a golden holds finite numbers or None (null); fix the number or pass "
                                  "None where it is undefined"])
    assert not (own_suite.path / "golden").exists()
    run(own_suite, monkeypatch, numbers(), "--regen-all").assert_outcomes(passed=1)
    refused = run(own_suite, monkeypatch, values, "--regen-all")  # nor does a regeneration record it
    refused.assert_outcomes(failed=1)
    assert json.loads((own_suite.path / "golden" / "mine" / "clean.json").read_text())[
        "methods"]["m"]["widget"]["pro"] == 0.7


def test_an_unreadable_golden_is_regenerated_by_the_flag_its_advice_names(own_suite, monkeypatch):
    """GOLDEN_FIX names the flag that rewrites a golden that fails its schema: --force-regen does not
    (pytest-regressions rewrites only after a comparison fails), --regen-all does."""
    from experiments.readers.golden import GOLDEN_FIX

    golden = own_suite.path / "golden" / "mine" / "clean.json"
    run(own_suite, monkeypatch, numbers())
    record = json.loads(golden.read_text())
    record["methods"]["m"]["widget"]["image_auroc"] = "0.9"
    golden.write_text(json.dumps(record))
    damaged = golden.read_bytes()
    forced = run(own_suite, monkeypatch, numbers(), "--force-regen")
    forced.assert_outcomes(failed=1)
    forced.stdout.fnmatch_lines(["*clean.json: field methods.m.widget.image_auroc must be a number or null*"])
    assert golden.read_bytes() == damaged, "--force-regen does not rewrite a golden it cannot read"
    assert "--force-regen" not in GOLDEN_FIX
    flag = re.search(r"pytest (--[\w-]+)", GOLDEN_FIX).group(1)
    assert flag in forced.stdout.str(), "the failure gives the advice"
    run(own_suite, monkeypatch, numbers(), flag).assert_outcomes(passed=1)
    assert json.loads(golden.read_text())["methods"]["m"]["widget"]["image_auroc"] == 0.9
    run(own_suite, monkeypatch, numbers()).assert_outcomes(passed=1)
