"""Golden records of a run: every number the report states, with tolerances derived from
the test sets' granularity and the drift measured between two runs.

A golden file (``golden/<dataset>-<backbone>/<scenario>.json``) holds, per method key and
entry (each class, ``mean``, ``pooled`` for one global tau, ``shortcut`` for the unified
model's analysis), the checked numbers, and a ``tolerances`` block whose every entry states
its rule, its inputs and why.  ``compare`` is the one comparison used by the pytest gates.
Results come in typed (``experiments.results.ScenarioResult``); golden files and their
``entries`` stay plain ``{method key: {entry: {number: value}}}`` JSON.
"""

from __future__ import annotations

import math
from pathlib import Path

from experiments.results import MEAN, POOLED, ClassResult, MethodResult, ScenarioResult

DRIFT_FILE = "drift.json"  # per golden folder: largest differences measured between two runs
DRIFT_FACTOR = 2  # allowed: twice the largest difference measured between two faithful runs


SHORTCUT = "shortcut"  # the entry of the unified model's cross-class analysis


def class_numbers(pc: ClassResult) -> dict[str, float | int | None]:
    """The checked numbers of one (method, class): RECORDED, the uncertain groups' AUROC against
    the test normals (``uncertain_<group>_auroc``) and the memory-bank size where recorded."""
    flat: dict[str, float | int | None] = pc.recorded()
    for group, g in sorted(pc.uncertain_groups().items()):
        flat[f"uncertain_{group}_auroc"] = g.auroc_vs_test_normals
    if pc.memory_bank_size is not None:
        flat["memory_bank_size"] = pc.memory_bank_size
    for defect, numbers in (pc.by_defect or {}).items():  # judged by the metric's own tolerance (tolerance_name)
        flat.update({f"{name}@{defect}": v for name, v in numbers.items()})
    return flat


def shortcut_numbers(m: MethodResult) -> dict[str, float | None]:
    """The unified model's cross-class cells (``cross_class_<i>_<j>``) and feature separation."""
    out: dict[str, float | None] = {
        f"cross_class_{i}_{j}": v for i, row in m.cross_class_confusion.items() for j, v in row.items()}
    out.update(m.feature_separation)
    return out


def entries(result: ScenarioResult) -> dict[str, dict[str, dict]]:
    """``{method key: {entry: {number: value}}}`` of one scenario: each class, ``mean``, and
    ``pooled`` / ``shortcut`` where the scenario has them (a golden file's ``methods``)."""
    out: dict[str, dict[str, dict]] = {}
    for m in result.methods:
        e: dict[str, dict] = {c: class_numbers(pc) for c, pc in m.per_class.items()}
        e[MEAN] = m.mean()
        if m.pooled is not None:
            e[POOLED] = m.pooled.recorded()
        if m.shortcut is not None:
            e[SHORTCUT] = shortcut_numbers(m)
        out[m.key] = e
    return out


def tolerance_name(number: str) -> str:
    """The tolerance entry that judges a number (cross-class cells share one)."""
    if number.startswith("cross_class_"):
        return "cross_class_confusion"
    return number.split("@", 1)[0]  # a metric of one defect type: image_auroc@logical_anomalies


def _set_sizes(result: ScenarioResult) -> dict[str, int]:
    """The smallest sets of the scenario (over classes): they give the coarsest granularity."""
    normal, anomalous, groups = [], [], {}
    for m in result.methods:
        for pc in m.per_class.values():
            n_normal, n_anomalous = pc.test_sizes
            normal.append(n_normal)
            anomalous.append(n_anomalous)
            for g, group in pc.uncertain_groups().items():
                groups[g] = min(groups.get(g, group.n), group.n)
    sizes = {"n_normal": min(normal), "n_anomalous": min(anomalous),
             "n_test": min(a + b for a, b in zip(normal, anomalous))}
    sizes.update({f"n_{g}": n for g, n in groups.items()})
    return sizes


def derive_tolerances(result: ScenarioResult, drift: dict) -> dict[str, dict]:
    """Each checked number's tolerance: max(granularity rule, DRIFT_FACTOR x measured drift).

    ``drift``: a drift.json record (``max_abs`` per number, ``max_rel`` for the threshold,
    ``how``: what was compared).  Granularity: one swapped (normal, anomalous) pair moves
    AUROC by 1/(n_normal n_anomalous); one image crossing tau moves F1/accuracy by up to
    1/n_test; one normal image of a class crossing another class's tau moves a cross-class
    cell by 1/n_normal.  The smallest class of the scenario sets n (coarsest steps).
    """
    s = _set_sizes(result)
    how = drift.get("how", "not measured")
    drift = scenario_drift(drift, result.scenario)  # shift-trained models drift more than clean ones
    measured = drift.get("max_abs", {})

    def entry(name: str, granular: float, rule: str, why: str, unit: str = "abs") -> dict:
        d = measured.get(name, 0.0) if unit == "abs" else drift.get("max_rel", {}).get(name, 0.0)
        allowed = max(granular, DRIFT_FACTOR * d)
        return {unit: allowed, "rule": f"max({rule} = {granular:.3g}, {DRIFT_FACTOR} x drift {d:.3g})",
                "why": f"{why}; drift: {how}"}

    pairs = s["n_normal"] * s["n_anomalous"]
    tol = {
        "image_auroc": entry("image_auroc", 3 / pairs, f"3 / ({s['n_normal']} x {s['n_anomalous']})",
                             "three swapped (normal, anomalous) pairs of the smallest test set"),
        "image_auprc": entry("image_auprc", 6 / pairs, f"6 / ({s['n_normal']} x {s['n_anomalous']})",
                             "a swap moves AP more near the top of the ranking: twice the AUROC allowance"),
        "image_f1": entry("image_f1", 2.5 / s["n_test"], f"2.5 / {s['n_test']}",
                          "two images of the smallest test set crossing tau (half a step more: float rounding)"),
        "image_accuracy": entry("image_accuracy", 2.5 / s["n_test"], f"2.5 / {s['n_test']}",
                                "two images of the smallest test set crossing tau (half a step more: float rounding)"),
        "threshold": entry("threshold", 2e-3, "2 grid steps ~ 2e-3 relative",
                           "tau is a point of the 1000-step grid over the validation range (one step ~0.1% of "
                           "it); a tie in F1 broken the other way moves it a step or two", unit="rel"),
        "pixel_auroc": entry("pixel_auroc", 5e-4, "floor 5e-4",
                             "over every test pixel (~10^5-10^6): granularity negligible, drift decides"),
        "image_f1_max": entry("image_f1_max", 2.5 / s["n_test"], f"2.5 / {s['n_test']}",
                              "the best F1 over every threshold: two images of the smallest test set on the other "
                              "side of it (half a step more: float rounding)"),
        "pixel_ap": entry("pixel_ap", 5e-4, "floor 5e-4",
                          "average precision over every test pixel: granularity negligible, drift decides"),
        "pixel_f1_max": entry("pixel_f1_max", 5e-4, "floor 5e-4",
                              "the best F1 over every test pixel's threshold: granularity negligible, drift decides"),
        "pro": entry("pro", 5e-4, "floor 5e-4", "mean overlap over every defect region: drift decides"),
        "memory_bank_size": {"abs": 0, "rule": "exact", "why": "floor(rho x training patches): an integer rule"},
        "cross_class_confusion": entry("cross_class_confusion", 1 / s["n_normal"], f"1 / {s['n_normal']}",
                                       "one normal test image crossing another class's tau"),
        "silhouette": entry("silhouette", 1e-3, "floor 1e-3", "a float statistic of the pooled features"),
        "centroid_accuracy": entry("centroid_accuracy", 0.01, "1 / 100",
                                   "leave-one-out over the pooled training images (>= 100): about one image"),
    }
    for key, n in s.items():
        if key.startswith("n_") and key not in ("n_normal", "n_anomalous", "n_test"):
            group = key[2:]
            tol[f"uncertain_{group}_auroc"] = entry(
                f"uncertain_{group}_auroc", 3 / (s["n_normal"] * n), f"3 / ({s['n_normal']} x {n})",
                f"three swapped (test normal, {group}) pairs")
    return tol


def load_drift(folder: Path) -> dict:
    """The folder's measured drift, or the embedded set's as a stand-in (said in ``how``)."""
    from experiments.readers import read_drift

    path = folder / DRIFT_FILE
    if path.exists():
        return read_drift(path)
    stand_in = folder.parent / "embedded-efficientnet_lite0" / DRIFT_FILE
    if stand_in.is_file():
        drift = read_drift(stand_in)
        return {**drift, "how": f"not measured on this data; the embedded set's ({drift.get('how')})"}
    return {"max_abs": {}, "max_rel": {}, "how": "not measured"}


def payload(result: ScenarioResult, dataset: str, backbone: str, tolerances: dict,
            verdict: dict | None = None) -> dict:
    """A golden file's content, built as the ``GoldenFile`` that reads it: what was run, the tolerances,
    every checked number, and ``verdict``'s preset, status and summary where a gate gives one."""
    from experiments.readers import GOLDEN_FORMAT, GoldenFile

    cfg = result.config
    return GoldenFile(
        format=GOLDEN_FORMAT, dataset=dataset, backbone=backbone, weights_source=cfg.get("weights_source"),
        scenario=result.scenario, seed=cfg.get("seed"), tolerances=tolerances, methods=entries(result),
        recorded_with_verdict=None if verdict is None else {k: verdict[k] for k in ("preset", "status", "summary")},
    ).to_json()


def allowed_difference(tolerances: dict, name: str, expected: float) -> float:
    """The largest |actual - expected| the tolerance of ``name`` accepts (0 without one)."""
    tol = tolerances.get(tolerance_name(name), {"abs": 0.0})
    return tol.get("abs", 0.0) + tol.get("rel", 0.0) * abs(expected)


def within(expected: float, actual: float, allowed: float) -> bool:
    """|actual - expected| <= allowed, stated so that NaN never holds: a NaN on either side (or as
    the allowance) is a change, and an infinity holds only against the same infinity."""
    if math.isnan(expected) or math.isnan(actual) or math.isnan(allowed):
        return False
    if math.isinf(expected) or math.isinf(actual):
        return expected == actual
    return abs(actual - expected) <= allowed


def compare_numbers(expected: dict, actual: dict, tolerances: dict) -> list[tuple[str, object, object, float]]:
    """(number, expected, actual, allowed) of every number beyond its tolerance, or absent/present
    on one side only (a null must stay null); NaN / inf: see ``within``."""
    moved = []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name), actual.get(name)
        if e is None or a is None:
            if e is not a:
                moved.append((name, e, a, 0.0))
            continue
        allowed = allowed_difference(tolerances, name, e) if math.isfinite(e) else 0.0
        if not within(e, a, allowed):
            moved.append((name, e, a, allowed))
    return moved


def describe(moved: list[tuple[str, object, object, float]]) -> list[str]:
    def fmt(v: object) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return [f"{n}: expected {fmt(e)}, got {fmt(a)}" + (f" (diff {a - e:+.4g}, allowed {t:.4g})"
            if isinstance(e, (int, float)) and isinstance(a, (int, float)) else "") for n, e, a, t in moved]


def max_drift(a: list[ScenarioResult], b: list[ScenarioResult], b_entries: dict | None = None) -> dict:
    """Largest |a - b| per number (and relative for the threshold) over two runs' results.

    ``b_entries``: instead of ``b``, ``{scenario: entries}`` (e.g. read from golden files).
    """
    by_b = b_entries if b_entries is not None else {r.scenario: entries(r) for r in b}
    by_scenario: dict[str, dict] = {}
    for r in a:
        if r.scenario not in by_b:
            continue
        other = by_b[r.scenario]
        max_abs: dict[str, float] = {}
        max_rel: dict[str, float] = {}
        for key, es in entries(r).items():
            for entry_name, numbers in es.items():
                for name, v in numbers.items():
                    w = other.get(key, {}).get(entry_name, {}).get(name)
                    if isinstance(v, (int, float)) and isinstance(w, (int, float)):
                        t = tolerance_name(name)
                        max_abs[t] = max(max_abs.get(t, 0.0), abs(v - w))
                        if v:
                            max_rel[t] = max(max_rel.get(t, 0.0), abs(v - w) / abs(v))
        by_scenario[r.scenario] = {"max_abs": max_abs, "max_rel": max_rel}
    return {**merge_drift(*by_scenario.values()), "by_scenario": by_scenario}


def merge_drift(*records: dict) -> dict:
    """The largest of several drift records, number by number (and scenario by scenario)."""
    out: dict = {"max_abs": {}, "max_rel": {}}
    for r in records:
        for part in ("max_abs", "max_rel"):
            for k, v in r.get(part, {}).items():
                out[part][k] = max(out[part].get(k, 0.0), v)
    scenarios = {s for r in records for s in r.get("by_scenario", {})}
    if scenarios:
        out["by_scenario"] = {s: merge_drift(*[r["by_scenario"][s] for r in records if s in r.get("by_scenario", {})])
                              for s in sorted(scenarios)}
    return out


def scenario_drift(drift: dict, scenario: str) -> dict:
    """The drift measured for this scenario where the record has it, else the record's overall maximum."""
    return drift.get("by_scenario", {}).get(scenario, drift)


def record(run_folder: Path, dest: Path) -> list[Path]:
    """Write a results-only golden of a run into ``dest`` (``ad-repro golden record``): one
    ``<scenario>.json`` per verified results file, with tolerances derived from its test sets'
    granularity (and ``dest``'s ``drift.json`` where one was measured), each with its rule and why.
    A ``dest`` that is ``run_folder`` (or inside it) or another run's folder (it holds a run's
    ``provenance.json``, ``results/``, ``run_config.json`` or ``checksums.json``, whose
    ``config.json`` would be overwritten) is a ``ValueError``, before anything is read or written."""
    import os

    from ad_core.data.io import write_json
    from experiments.artifacts import CHECKSUMS, GUARD, load_results
    from experiments.config import MACHINE_SETTINGS
    from experiments.provenance import PROVENANCE_FILE
    from experiments.readers import CONFIG_FORMAT, plain_name, read_config

    run, where = Path(run_folder).resolve(), Path(dest).resolve()
    if where == run or run in where.parents:
        what = "is the run folder itself" if where == run else f"is inside the run folder {run_folder}"
        raise ValueError(f"{dest}: {what}: record into a separate golden folder (e.g. golden/<dataset>-<backbone>)")
    marks = [name for name in (PROVENANCE_FILE, "results", GUARD, CHECKSUMS) if os.path.lexists(Path(dest) / name)]
    if marks:
        raise ValueError(f"{dest}: is a run folder (it holds {', '.join(marks)}), whose config.json this would "
                         "overwrite: record into a separate golden folder (e.g. golden/<dataset>-<backbone>)")
    results = load_results(Path(run_folder), strict=True)  # a handed-over folder: damage is an error
    if not results:
        raise ValueError(f"{run_folder}/results holds no verified scenario results: run the study there first")
    dest = Path(dest)
    drift = load_drift(dest) if (dest / DRIFT_FILE).exists() else {
        "max_abs": {}, "max_rel": {},
        "how": "not measured (a run is bit-identical on one machine: docs/protocol.md §13)"}
    files = {dest / f"{plain_name(r.scenario, 'scenario', str(run_folder))}.json":
             payload(r, str(r.config.get("dataset")), str(r.config.get("backbone")), derive_tolerances(r, drift))
             for r in results}
    config = Path(run_folder) / "config.json"
    if config.exists():  # the run's study settings: `ad-repro run --config DEST --data ... --out ...` repeats it
        recorded = read_config(config)
        # where it ran and what it read and wrote stay behind (a --data folder is kept as a mark that the
        # rerun must be given one: its path is never followed)
        kept = {k: v for k, v in recorded.items() if k not in MACHINE_SETTINGS or k == "data"}
        files[dest / "config.json"] = {"format": CONFIG_FORMAT, **kept}
    for path, content in files.items():  # every file read and checked first: a refusal writes nothing
        write_json(path, content)
    return list(files)
