"""Golden records of a run: every number the report states, with tolerances derived from
the test sets' granularity and the drift measured between two runs.

A golden file (``golden/<dataset>-<backbone>/<scenario>.json``) holds, per method key and
entry (each class, ``mean``, ``pooled`` for one global tau, ``shortcut`` for the unified
model's analysis), the checked numbers, and a ``tolerances`` block whose every entry states
its rule, its inputs and why.  ``compare`` is the one comparison used by the pytest gates.
Results come in typed (``experiments.evaluation.results.ScenarioResult``); golden files and their
``entries`` stay plain ``{method key: {entry: {number: value}}}`` JSON.
"""

from __future__ import annotations

import math
from pathlib import Path

from ad_core.metrics import METRICS
from ad_core.metrics.catalog import CROSS_CLASS_CONFUSION, MEMORY_BANK_SIZE, UNCERTAIN_AUROC
from ad_core.metrics.registry import Metric, SetSizes
from experiments.evaluation.results import MEAN, POOLED, ClassResult, MethodResult, ScenarioResult

DRIFT_FILE = "drift.json"  # per golden folder: largest differences measured between two runs
DRIFT_FACTOR = 2  # allowed: twice the largest difference measured between two faithful runs


SHORTCUT = "shortcut"  # the entry of the unified model's cross-class analysis


def class_numbers(pc: ClassResult) -> dict[str, float | int | None]:
    """The checked numbers of one (method, class): the recorded ones, the uncertain groups' AUROC against
    the test normals (``uncertain_<group>_auroc``) and the memory-bank size where recorded."""
    flat: dict[str, float | int | None] = pc.recorded()
    for group, g in sorted(pc.uncertain_groups().items()):
        flat[UNCERTAIN_AUROC.for_group(group)] = g.auroc_vs_test_normals
    if pc.memory_bank_size is not None:
        flat[MEMORY_BANK_SIZE.name] = pc.memory_bank_size
    for defect, numbers in (pc.by_defect or {}).items():  # judged by the metric's own tolerance (tolerance_name)
        flat.update({f"{name}@{defect}": v for name, v in numbers.items()})
    return flat


def shortcut_numbers(m: MethodResult) -> dict[str, float | None]:
    """The unified model's cross-class cells (``cross_class_<i>_<j>``) and feature separation."""
    cells = CROSS_CLASS_CONFUSION.cells
    out: dict[str, float | None] = {
        f"{cells}{i}_{j}": v for i, row in m.cross_class_confusion.items() for j, v in row.items()}
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
    """The tolerance entry that judges a number (cross-class cells share their metric's)."""
    cells = next((m.name for m in METRICS.values() if m.cells and number.startswith(m.cells)), None)
    return cells or number.split("@", 1)[0]  # a metric of one defect type: <metric>@logical_anomalies


def set_sizes(result: ScenarioResult) -> SetSizes:
    """The smallest sets of the scenario (over classes): they give the coarsest granularity."""
    normal, anomalous, groups = [], [], {}
    for m in result.methods:
        for pc in m.per_class.values():
            n_normal, n_anomalous = pc.test_sizes
            normal.append(n_normal)
            anomalous.append(n_anomalous)
            for g, group in pc.uncertain_groups().items():
                groups[g] = min(groups.get(g, group.n), group.n)
    return SetSizes(min(normal), min(anomalous), min(a + b for a, b in zip(normal, anomalous)), groups)


def judged_numbers(metric: Metric, sizes: SetSizes) -> list[tuple[str, SetSizes, dict[str, str]]]:
    """(tolerance name, the sizes its rule sees, the why's fields) of each entry a metric gives: one, or
    one per group of images of unsure label."""
    if metric.level != "uncertain":
        return [(metric.name, sizes, {})]
    return [(metric.for_group(g), SetSizes(sizes.n_normal, sizes.n_anomalous, sizes.n_test, sizes.groups, g),
             {"group": g}) for g in sizes.groups]


def derive_tolerances(result: ScenarioResult, drift: dict) -> dict[str, dict]:
    """Each checked number's tolerance: max(its metric's granularity rule, DRIFT_FACTOR x measured drift).

    ``drift``: a drift.json record (``max_abs`` per number, ``max_rel`` for the threshold,
    ``how``: what was compared).  Each registered metric's ``tolerance`` gives the granular allowance
    from the scenario's set sizes (its smallest class: the coarsest steps), its rule and why.
    """
    sizes = set_sizes(result)
    how = drift.get("how", "not measured")
    drift = scenario_drift(drift, result.scenario)  # shift-trained models drift more than clean ones
    tol: dict[str, dict] = {}
    for metric in METRICS.values():
        rule = metric.tolerance
        for name, seen, fields in judged_numbers(metric, sizes):
            granular, text = rule.allowance(seen)
            why = rule.why.format(**fields) if fields else rule.why
            if not rule.drift:
                tol[name] = {rule.unit: granular, "rule": text, "why": why}
                continue
            d = drift.get("max_abs" if rule.unit == "abs" else "max_rel", {}).get(name, 0.0)
            tol[name] = {rule.unit: max(granular, DRIFT_FACTOR * d),
                         "rule": f"max({text} = {granular:.3g}, {DRIFT_FACTOR} x drift {d:.3g})",
                         "why": f"{why}; drift: {how}"}
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
    from experiments.definition.config import read_config, recorded_config
    from experiments.readers import plain_name
    from experiments.records.artifacts import CHECKSUMS, GUARD, load_results
    from experiments.records.provenance import PROVENANCE_FILE

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
        files[dest / "config.json"] = recorded_config(read_config(config))
    for path, content in files.items():  # every file read and checked first: a refusal writes nothing
        write_json(path, content)
    return list(files)
