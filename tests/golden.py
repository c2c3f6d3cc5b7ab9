"""Golden files: end-to-end metrics per scenario with the tolerances they are checked with.

``golden/<dataset>-<backbone>/<scenario>.json``.  Regeneration (options registered in
``conftest.py``): ``--force-regen`` rewrites a golden that differs and fails that test,
``--regen-all`` rewrites and lets the tests pass.

Why this format and not pytest-regressions' ``num_regression`` / ``data_regression``
(the project used only their command-line flags, so the dependency is dropped):
- the tolerance of every number and the reason for it live **in the golden file**, next
  to the numbers; pytest-regressions takes tolerances as call arguments, so the data and
  the rule that judges it would sit in two places, and a regenerated file would not say
  how it is to be read;
- a metric that is undefined is ``null`` with the run's reason (no masks, no maps) and
  must stay ``null``; num_regression's CSV turns it into NaN, which it then compares as
  "equal" or not depending on options;
- one file per scenario holds every method x class, and ``compare`` reports all the
  numbers that moved in one message, so a reviewer reads a scenario's change at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ad_core.data.io import write_json
from experiments.methods import METHODS
from experiments.results import RECORDED, method_key
from experiments.scenarios import SCENARIOS

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"

# Written into each golden file on regeneration; the checks read them back from the file.
DEFAULT_TOLERANCES = {
    "image_auroc": {"abs": 0.02, "why": "one swapped (normal, anomalous) pair moves AUROC by 1/(n_normal*n_anomalous) "
                    "(1/168 on the embedded test sets); 0.02 absorbs ~3 swaps from float-level differences "
                    "between BLAS builds (coreset near-ties), far below what a method change moves"},
    "image_auprc": {"abs": 0.02, "why": "as image_auroc: a few rank swaps"},
    "image_f1": {"abs": 0.08,
                 "why": "one image crossing tau changes F1/accuracy by up to ~0.04 on 26 test images; two allowed"},
    "image_accuracy": {"abs": 0.08, "why": "one image of 26 is 0.038; two allowed"},
    "threshold": {"rel": 0.02, "why": "tau is a grid value in the validation score range: float-level drift of scores"},
    "pixel_auroc": {"abs": 0.01, "why": "averaged over ~1.3M pixels: small drift only"},
    "pro": {"abs": 0.02, "why": "mean over ~14 regions per class: a region's overlap can shift a little"},
}


def flat_metrics(per_class: dict) -> dict:
    """The checked numbers of one (method, class): RECORDED, plus each uncertain group's AUROC
    against the test normals as ``uncertain_<group>_auroc`` where the dataset has such groups."""
    flat = {k: per_class.get(k) for k in RECORDED}
    for group, entry in sorted((per_class.get("uncertain") or {}).items()):
        if isinstance(entry, dict):
            flat[f"uncertain_{group}_auroc"] = entry["auroc_vs_test_normals"]
    return flat


def golden_payload(result: dict, dataset: str, backbone: str, tolerances: dict) -> dict:
    methods = {m: {c: flat_metrics(v) for c, v in r["per_class"].items()}
               for m, r in result["methods"].items()}
    cfg = result["config"]
    return {"dataset": dataset, "backbone": backbone, "weights_source": cfg["weights_source"],
            "scenario": result["scenario"], "seed": cfg["seed"], "tolerances": tolerances, "methods": methods}


def compare(golden: dict, actual: dict, method: str, category: str) -> list[str]:
    """Human-readable differences beyond tolerance (empty when the run matches)."""
    problems = []
    expected = golden["methods"][method][category]
    got = flat_metrics(actual["methods"][method]["per_class"][category])
    for key, tol in golden["tolerances"].items():
        e, a = expected.get(key), got.get(key)
        if e is None or a is None:
            if e is not a:
                problems.append(f"{key}: expected {e}, got {a}")
            continue
        allowed = tol.get("abs", 0.0) + tol.get("rel", 0.0) * abs(e)
        if abs(a - e) > allowed:
            problems.append(f"{key}: expected {e:.4f}, got {a:.4f} (diff {a - e:+.4f}, tolerance {allowed:.4f})")
    return problems


def check_golden(request: pytest.FixtureRequest, folder: str, result: dict, method: str, category: str,
                 default_tolerances: dict | None = None) -> None:
    path = GOLDEN_ROOT / folder / f"{result['scenario']}.json"
    force = request.config.getoption("force_regen")
    regen_all = request.config.getoption("regen_all")
    dataset, backbone = folder.rsplit("-", 1) if folder.count("-") == 1 else (folder, "")
    if path.is_file():
        golden = json.loads(path.read_text())
        known = method in golden["methods"] and category in golden["methods"][method]
        problems = compare(golden, result, method, category) if known else [f"{method}/{category} missing"]
        tolerances = golden["tolerances"]
    else:
        golden, problems, tolerances = None, ["no golden file"], default_tolerances or DEFAULT_TOLERANCES
    if not problems:
        return
    if force or regen_all:
        write_json(path, golden_payload(result, dataset, backbone, tolerances))
        if regen_all:
            return
        pytest.fail(f"{path} regenerated ({'; '.join(problems)}); rerun to check against it.")
    if golden is None:
        pytest.fail(f"No golden at {path}. Record one with: pytest -m <marker> --regen-all")
    pytest.fail(f"{result['scenario']} / {method} / {category} differs from {path}:\n  " + "\n  ".join(problems))


def method_keys(scenario) -> list[str]:
    """Every (method, ratio) key a full run of ``scenario`` produces (all registered methods)."""
    return [method_key(m, r) for m in (scenario.methods or tuple(METHODS)) for r in scenario.coreset_ratios or (None,)]


def cases(categories, scenarios=tuple(SCENARIOS)) -> list:
    return [pytest.param(s, m, c, id=f"{s}-{m}-{c}")
            for s in scenarios for m in method_keys(SCENARIOS[s]) for c in categories]
