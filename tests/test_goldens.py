"""Golden records: every reported number is flattened, tolerances follow their stated rule, nulls stay null."""

from __future__ import annotations

import pytest

from experiments.evaluation.results import ClassResult, MethodResult, ScenarioResult
from experiments.gates.goldens import compare_numbers, derive_tolerances, entries, max_drift, merge_drift

pytestmark = pytest.mark.fast


def result(auroc: float = 0.9, f1: float = 0.8, pro: float | None = 0.7, scenario: str = "clean",
           uncertain: dict | None = None) -> ScenarioResult:
    def pc(confusion: list[list[int]]) -> ClassResult:
        return ClassResult(10.0, confusion, {"image_auroc": auroc, "image_auprc": 0.9, "image_f1": f1,
                                             "image_accuracy": 0.8, "pixel_auroc": None if pro is None else 0.95,
                                             "pro": pro}, memory_bank_size=123, uncertain=uncertain)

    shortcut = {"cross_class_confusion": {"a": {"a": 0.1, "b": 0.0}, "b": {"a": 0.5, "b": 0.1}},
                "feature_separation": {"silhouette": 0.4, "centroid_accuracy": 1.0}}
    m = MethodResult("patchcore", None, {"a": pc([[10, 2], [3, 11]]), "b": pc([[20, 0], [0, 30]])},
                     {"a": 10.0, "b": 10.0}, pooled=pc([[30, 2], [3, 41]]), shortcut=shortcut)
    return ScenarioResult(scenario, "a test scenario", {"weights_source": "x", "seed": 42}, [m])


def test_entries_hold_every_reported_number():
    e = entries(result())["patchcore"]
    assert set(e) == {"a", "b", "mean", "pooled", "shortcut"}
    assert e["a"]["memory_bank_size"] == 123 and e["shortcut"]["cross_class_b_a"] == 0.5
    assert e["shortcut"]["silhouette"] == 0.4 and e["mean"]["image_auroc"] == pytest.approx(0.9)
    assert list(e["a"]) == ["image_auroc", "image_auprc", "image_f1", "image_accuracy", "threshold", "pixel_auroc",
                            "pro", "image_f1_max", "pixel_ap", "pixel_f1_max", "iou_max", "mad", "au_pro_005",
                            "seg_f1", "spro", "memory_bank_size"]
    assert e["pooled"]["image_f1"] == 0.8 and e["mean"]["pixel_auroc"] == pytest.approx(0.95)


def test_entries_read_a_results_file_as_it_states_its_mean():
    """A results JSON parsed once (``ScenarioResult.from_json``) gives the entries of its own numbers:
    its ``mean`` as written (a class number edited by hand does not move it), uncertain groups included."""
    groups = {"test_normal_median_score": 1.0, "p067": {"n": 4, "auroc_vs_test_normals": 0.6},
              "p033": {"n": 7, "auroc_vs_test_normals": 0.55}}
    written = result(uncertain=groups).to_json()
    written["methods"]["patchcore"]["per_class"]["a"]["image_auroc"] = 0.1
    read = ScenarioResult.from_json(written)
    assert read.to_json() == written
    e = entries(read)["patchcore"]
    assert e["a"]["image_auroc"] == 0.1 and e["mean"]["image_auroc"] == pytest.approx(0.9)
    assert [k for k in e["a"] if k.startswith("uncertain_")] == ["uncertain_p033_auroc", "uncertain_p067_auroc"]
    tol = derive_tolerances(read, {"max_abs": {}, "max_rel": {}})
    assert tol["uncertain_p033_auroc"]["abs"] == pytest.approx(3 / (12 * 7))  # smallest normal set x group size


def test_tolerances_follow_granularity_and_scenario_drift():
    drift = {"how": "test", "max_abs": {"image_auroc": 0.5}, "max_rel": {},
             "by_scenario": {"clean": {"max_abs": {"image_auroc": 0.01, "pro": 0.002}, "max_rel": {"threshold": 0.1}}}}
    tol = derive_tolerances(result(), drift)
    assert tol["image_auroc"]["abs"] == pytest.approx(max(3 / (12 * 14), 2 * 0.01))  # smallest class: 12 x 14
    assert tol["image_f1"]["abs"] == pytest.approx(2.5 / 26) and tol["memory_bank_size"]["abs"] == 0
    assert tol["pro"]["abs"] == pytest.approx(0.004) and tol["threshold"]["rel"] == pytest.approx(0.2)
    assert tol["cross_class_confusion"]["abs"] == pytest.approx(1 / 12)
    assert "3 / (12 x 14)" in tol["image_auroc"]["rule"] and "test" in tol["image_auroc"]["why"]
    other = derive_tolerances(result(scenario="unified"), drift)  # no scenario record: the overall maximum
    assert other["image_auroc"]["abs"] == pytest.approx(1.0)


def test_compare_flags_moves_beyond_tolerance_and_null_changes():
    tol = derive_tolerances(result(), {"max_abs": {}, "max_rel": {}})
    golden = entries(result())["patchcore"]["a"]
    assert compare_numbers(golden, entries(result(auroc=0.9 + 0.01))["patchcore"]["a"], tol) == []
    moved = compare_numbers(golden, entries(result(auroc=0.95))["patchcore"]["a"], tol)
    assert [m[0] for m in moved] == ["image_auroc"]
    assert [m[0] for m in compare_numbers(golden, entries(result(pro=None))["patchcore"]["a"], tol)] == [
        "pixel_auroc", "pro"]  # a number that became null (or the reverse) is a change


def test_measured_drift_is_the_largest_difference_per_scenario():
    a, b = [result(auroc=0.9)], [result(auroc=0.93)]
    d = max_drift(a, b)
    assert d["max_abs"]["image_auroc"] == pytest.approx(0.03) and d["by_scenario"]["clean"]["max_abs"]["pro"] == 0
    merged = merge_drift(d, {"max_abs": {"image_auroc": 0.05}, "max_rel": {}})
    assert merged["max_abs"]["image_auroc"] == pytest.approx(0.05)
    assert merged["by_scenario"]["clean"]["max_abs"]["image_auroc"] == pytest.approx(0.03)
