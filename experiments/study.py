"""Run a set of scenarios end to end and write every artifact (the main job)."""

from __future__ import annotations

import time

from ad_core.data.io import write_json
from experiments import plots
from experiments.artifacts import guard_config, write_scenario, write_summary
from experiments.report import write_report
from experiments.runner import RunConfig, StudyRun, config_fingerprint
from experiments.scenarios import select


def run_study(config: RunConfig) -> tuple[list[dict], dict[str, float]]:
    """Run the selected scenarios; return (all results in --out, this run's wall times in s)."""
    scenarios = select(config.scenarios)
    t_start = time.perf_counter()
    run = StudyRun(config)
    guard_config(run.out, config_fingerprint(run))
    timings: dict[str, float] = {"prepare": time.perf_counter() - t_start}
    figs = run.out / "visualizations"
    for sc in scenarios:
        if not [m for m in sc.methods if m in config.methods]:
            continue
        t0 = time.perf_counter()
        result = run.run_scenario(sc)
        write_scenario(run.out, result)
        plots.roc_curves(result, figs)
        plots.confusion_matrices(result, figs)
        samples_of = {c: {s.relpath: s.path for s in run.samples(c, sc.eval_domain, "test")} for c in run.categories}
        plots.overlays(result, samples_of, figs)
        if sc.coreset_ratios:
            plots.coreset_tradeoff(result, figs)
        if sc.shortcut_analysis:
            plots.cross_class_heatmaps(result, figs)
        timings[sc.name] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    timings["features_computed"] = run.store.n_computed
    results = write_summary(run.out)
    write_json(run.out / "timings.json", timings)
    write_report(run.out, results, timings)
    return results, timings
