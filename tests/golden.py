"""Golden files: the pytest glue around ``experiments.goldens`` (format, tolerances, comparison).

``golden/<dataset>-<backbone>/<scenario>.json``.  Regeneration (options registered in
``conftest.py``): ``--force-regen`` rewrites a golden that differs and fails that test,
``--regen-all`` rewrites and lets the tests pass; both derive the tolerances anew from the
run's own set sizes and the folder's ``drift.json`` (``benchmarks/measure_drift.py``).

Why this format and not pytest-regressions' ``num_regression`` / ``data_regression``
(the project used only their command-line flags, so the dependency is dropped):
- the tolerance of every number, its rule and the reason for it live **in the golden
  file**, next to the numbers; pytest-regressions takes tolerances as call arguments, so
  the data and the rule that judges it would sit in two places, and a regenerated file
  would not say how it is to be read;
- a metric that is undefined is ``null`` with the run's reason (no masks, no maps) and
  must stay ``null``; num_regression's CSV turns it into NaN;
- one file per scenario holds every method x entry, and the comparison reports all the
  numbers that moved in one message, so a reviewer reads a scenario's change at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ad_core.data.io import write_json
from experiments.goldens import SHORTCUT, compare_numbers, derive_tolerances, describe, entries, load_drift, payload
from experiments.methods import METHODS
from experiments.results import MEAN, POOLED, ScenarioResult, method_key
from experiments.scenarios import SCENARIOS

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"


def check_golden(request: pytest.FixtureRequest, folder: str, result: ScenarioResult, method: str, entry: str,
                 verdict: dict | None = None) -> None:
    """Assert one (scenario, method, entry) of ``result`` against its golden, or regenerate it.

    ``verdict``: the run's reproduction verdict, kept in a regenerated golden (status and summary)
    so that the file says whether the numbers it guards reproduced the published ones."""
    path = GOLDEN_ROOT / folder / f"{result.scenario}.json"
    force = request.config.getoption("force_regen")
    regen_all = request.config.getoption("regen_all")
    dataset, backbone = folder.rsplit("-", 1) if folder.count("-") == 1 else (folder, "")
    actual = entries(result).get(method, {}).get(entry)
    if actual is None:
        pytest.fail(f"the run has no {method}/{entry} in {result.scenario}")
    if path.is_file():
        golden = json.loads(path.read_text())
        expected = golden["methods"].get(method, {}).get(entry)
        moved = compare_numbers(expected, actual, golden["tolerances"]) if expected is not None else None
        problems = describe(moved) if moved is not None else [f"{method}/{entry} missing from the golden"]
    else:
        golden, problems = None, ["no golden file"]
    if not problems:
        return
    if force or regen_all:
        tolerances = derive_tolerances(result, load_drift(path.parent))
        record = payload(result, dataset, backbone, tolerances)
        if verdict is not None:
            record["recorded_with_verdict"] = {k: verdict[k] for k in ("preset", "status", "summary")}
        write_json(path, record)
        if regen_all:
            return
        pytest.fail(f"{path} regenerated ({'; '.join(problems)}); rerun to check against it.")
    if golden is None:
        pytest.fail(f"No golden at {path}. Record one with: pytest -m <marker> --regen-all")
    pytest.fail(f"{result.scenario} / {method} / {entry} differs from {path}:\n  " + "\n  ".join(problems))


def method_keys(scenario) -> list[str]:
    """Every (method, ratio) key a full run of ``scenario`` produces (all registered methods)."""
    return [method_key(m, r) for m in (scenario.methods or tuple(METHODS)) for r in scenario.coreset_ratios or (None,)]


def scenario_entries(scenario, categories) -> list[str]:
    """Each class, the macro mean, and the pooled / shortcut results where the scenario has them."""
    return [*categories, MEAN, *([POOLED] if scenario.global_threshold else []),
            *([SHORTCUT] if scenario.shortcut_analysis else [])]


def cases(categories, scenarios=tuple(SCENARIOS)) -> list:
    return [pytest.param(s, m, e, id=f"{s}-{m}-{e}")
            for s in scenarios for m in method_keys(SCENARIOS[s]) for e in scenario_entries(SCENARIOS[s], categories)]
