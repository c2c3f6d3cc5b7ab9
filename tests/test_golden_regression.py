"""The golden_regression fixture: pytest-regressions' workflow (its flags, its .obtained file, its
messages) on the project's golden format, run in an inner pytest (pytester) as a user's suite would."""

from __future__ import annotations

import json
import re
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
