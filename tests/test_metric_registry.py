"""The metric registry: one record per metric; a metric registered from its own module flows into
ClassResult's JSON, the derived golden tolerances, the results file schema and the report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ad_core.metrics import METRICS, metric_names, recorded_names, register, unregister
from ad_core.metrics.registry import EVALUATED, Metric, floor
from experiments.evaluation.evaluate import evaluate
from experiments.evaluation.results import MethodResult, ScenarioResult, ScoreSet
from experiments.gates.goldens import derive_tolerances, entries
from experiments.readers import convert
from experiments.readers.run_folder import registered_results_schema
from experiments.reporting.report import summary_table

pytestmark = pytest.mark.fast

TOY_MODULE = '''
"""A toy metric: the fraction of test images scored above 0.5, declared as one record."""
import numpy as np

from ad_core.metrics import register
from ad_core.metrics.registry import Metric, Tolerance


def above_half(evaluation):
    return float(np.mean(evaluation.scores > 0.5))


TOY = register(Metric("toy_above_half", "image", "fraction of test images scored above 0.5",
                      Tolerance(lambda s: (1 / s.n_test, f"1 / {s.n_test}"), "one image crossing 0.5"),
                      direction="none", compute=above_half))
'''


@pytest.fixture
def toy_metric(tmp_path: Path):
    """Import the toy module from a temporary file (registering its metric); unregister it afterwards."""
    path = tmp_path / "toy_metric_module.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_metric_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module.TOY
    finally:
        METRICS.pop("toy_above_half", None)
        sys.modules.pop(spec.name, None)


def test_records_keep_the_table_and_file_order():
    benchmarks = ("iou_max", "mad", "au_pro_005", "seg_f1", "spro")  # the benchmarks' own measures, after them
    assert metric_names() == ("image_auroc", "image_auprc", "image_f1", "image_accuracy", "pixel_auroc", "pro",
                              "image_f1_max", "pixel_ap", "pixel_f1_max", *benchmarks)
    assert recorded_names() == ("image_auroc", "image_auprc", "image_f1", "image_accuracy", "threshold",
                                "pixel_auroc", "pro", "image_f1_max", "pixel_ap", "pixel_f1_max", *benchmarks)
    for m in METRICS.values():
        assert m.description and m.tolerance.why and m.direction in ("higher", "lower", "none")
        assert (m.compute is not None) == (m.level in EVALUATED), m.name


def test_register_refuses_a_taken_name_and_a_missing_compute():
    with pytest.raises(ValueError, match="registered already"):
        register(METRICS["pro"])
    with pytest.raises(ValueError, match="need a compute function"):
        register(Metric("no_compute", "image", "nothing", floor(0.1, "0.1", "why")))
    assert "no_compute" not in METRICS


def toy_result(test: ScoreSet) -> ScenarioResult:
    per_class = {"a": evaluate(test, 0.5), "b": evaluate(test, 0.6)}
    m = MethodResult("padim", None, per_class, {c: r.threshold for c, r in per_class.items()})
    return ScenarioResult("clean", "toy", {"seed": 0}, [m])


def test_a_registered_metric_flows_into_results_tolerances_schema_and_report(toy_metric):
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(6, int), np.ones(4, int)]
    maps = rng.random((10, 8, 8))
    masks = np.zeros((10, 8, 8), bool)
    masks[6:, 2:5, 2:5] = True
    test = ScoreSet([f"test/x/{i}.png" for i in range(10)], labels, rng.random(10), maps, masks)

    result = toy_result(test)
    pc = result.methods[0].per_class["a"]
    assert pc.metrics["toy_above_half"] == pytest.approx(np.mean(test.scores > 0.5))
    written = pc.to_json()
    keys = list(written)
    assert keys.index("toy_above_half") == keys.index("spro") + 1  # after the last registered one, before the options
    assert keys.index("confusion") == keys.index("pro") + 1
    assert result.methods[0].mean()["toy_above_half"] == pytest.approx(pc.metrics["toy_above_half"])

    tol = derive_tolerances(result, {"max_abs": {"toy_above_half": 0.2}, "max_rel": {}, "how": "test"})
    assert tol["toy_above_half"]["abs"] == pytest.approx(0.4)
    assert tol["toy_above_half"]["rule"].startswith("max(1 / 10 = 0.1, 2 x drift 0.2)")
    assert entries(result)["padim"]["a"]["toy_above_half"] == pc.metrics["toy_above_half"]

    as_file = json.loads(json.dumps({**result.to_json(), "format": 1}))
    convert("clean.json", as_file, registered_results_schema(), "fix")  # the schema knows the new number
    assert "toy_above_half" in summary_table([result])[0]


def test_a_results_file_without_a_later_metric_still_reads(toy_metric):
    """Files written before a metric was registered lack its key: read as null, not refused."""
    test = ScoreSet([f"test/x/{i}.png" for i in range(4)], np.array([0, 0, 1, 1]), np.array([0.1, 0.7, 0.4, 0.9]))
    as_file = {**toy_result(test).to_json(), "format": 1}
    for pc in as_file["methods"]["padim"]["per_class"].values():
        del pc["toy_above_half"]
    convert("clean.json", as_file, registered_results_schema(), "fix")
    read = ScenarioResult.from_json(as_file)
    assert read.methods[0].per_class["a"].metrics["toy_above_half"] is None


def test_unregister_removes_the_metric(toy_metric):
    assert "toy_above_half" in metric_names()
    unregister("toy_above_half")
    assert "toy_above_half" not in metric_names()
