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
    for sc in scenarios:
        if not run.scenario_methods(sc):
            continue
        t0 = time.perf_counter()
        result = run.run_scenario(sc)
        ctx = plots.FigureContext(lambda cat, relpath, d=sc.eval_domain: run.image_file(cat, d, relpath),
                                  config.image_size)
        drawn = plots.draw(result, sc.figures, run.out / "visualizations", ctx)
        result.figures = [p.relative_to(run.out).as_posix() for p in drawn]
        write_scenario(run.out, result)
        timings[sc.name] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    timings["features_computed"] = run.store.n_computed
    results = write_summary(run.out)
    write_json(run.out / "timings.json", timings)
    write_report(run.out, results, timings)
    return results, timings
