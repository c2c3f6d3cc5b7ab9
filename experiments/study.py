"""Run a set of scenarios end to end and write every artifact (the main job); several seeds."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from ad_core import timing
from ad_core.data.io import write_json
from experiments.definition.config import CONFIG_FORMAT, RunConfig, check_seeds, validate
from experiments.evaluation.results import ScenarioResult
from experiments.evaluation.statistics import aggregate, evaluate_claims
from experiments.execution.executors import make_executor, thread_count
from experiments.execution.plan import resolve
from experiments.execution.prepare import prepare_run
from experiments.execution.runner import StudyRun
from experiments.gates.verdict import SCENARIO as VERDICT_SCENARIO
from experiments.gates.verdict import UNIFIED, VERDICT_FILE, make_verdict
from experiments.records import provenance
from experiments.records.artifacts import check_guard, write_guard, write_scenario, write_summary
from experiments.records.official_maps import write_official_maps
from experiments.records.submission import write_submission
from experiments.reporting import plots
from experiments.reporting.report import write_report, write_seeds_report

log = logging.getLogger("ad-repro")


def run_study(config: RunConfig) -> tuple[list[ScenarioResult], dict[str, float]]:
    """Run the selected scenarios; return (all results in --out, this run's wall times in s).

    The configuration is validated first (``ConfigError`` before any data is read)."""
    validate(config)
    with thread_count(config.threads):
        return _run_study(config)


def _run_study(config: RunConfig) -> tuple[list[ScenarioResult], dict[str, float]]:
    t_start = time.perf_counter()
    timing.reset()
    resolved = resolve(config)  # the run worked out once: everything below reads it
    guarded = resolved.guarded()
    fresh = check_guard(resolved.out, guarded)  # another configuration in --out: refused before any write
    executor = make_executor(config, resolved.device)  # a scheduler that is not there: refused here too
    try:
        prep = prepare_run(resolved)  # the data written, the work planned
        run = StudyRun(prep)
        if fresh:
            write_guard(run.out, guarded)
        # `ad-repro run --config <out>` re-runs it (its study settings: experiments.cli.load_config_file)
        write_json(run.out / provenance.CONFIG_FILE, {"format": CONFIG_FORMAT, **config.to_json()})
        timings: dict[str, float] = {"prepare": time.perf_counter() - t_start}
        # dask: every feature extraction, fit and score split as cluster tasks; then the loop below reads caches
        distributed = executor.precompute(run)
    finally:
        executor.close()
    done: dict[str, ScenarioResult] = {}
    for sc in run.prep.scenarios:
        t0 = time.perf_counter()
        result = run.run_scenario(sc)
        ctx = plots.FigureContext(lambda cat, relpath, d=sc.eval_domain: run.image_file(cat, d, relpath),
                                  config.preprocessor())
        with timing.phase("figures"):
            drawn = plots.draw(result, sc.figures, run.out / "visualizations", ctx)
        result.figures = [p.relative_to(run.out).as_posix() for p in drawn]
        write_scenario(run.out, result)
        done[sc.name] = result
        timings[sc.name] = time.perf_counter() - t0
    with timing.phase("submission: private test sets"):
        write_submission(run)  # MVTec AD 2's test_private(_mixed): maps for its server, no metrics
    with timing.phase("official maps"):
        write_official_maps(run)  # --official-maps: every test image's map where the official scripts read it
    record = provenance.collect(run, config.threads, config.executor, config.workers)
    write_json(run.out / provenance.PROVENANCE_FILE, record)
    with timing.phase("claims (paired bootstrap)"):
        claims = evaluate_claims(done, config.seed) if config.bootstrap else []
    write_json(run.out / "claims.json", claims)
    with timing.phase("results, summary, verdict"):
        results = write_summary(run.out)
        clean = next((r for r in results if r.scenario == VERDICT_SCENARIO), None)
        verdict = make_verdict(clean) if clean is not None else None
        unified = next((r for r in results if r.scenario == UNIFIED), None)
        if unified is not None:  # the multi-class setting, against its own tables
            multi = make_verdict(unified, multi_class=True)
            if verdict is None:
                verdict = multi
            else:
                verdict["unified"] = multi
        if verdict is not None:
            write_json(run.out / VERDICT_FILE, verdict)
    timings["total"] = time.perf_counter() - t_start
    timings["features_computed"] = run.store.n_computed + distributed.get("features_computed", 0)
    if distributed:
        timings["executor"] = {"kind": config.executor, "tasks": distributed["tasks"],
                               "worker_phases": distributed["worker_phases"]}
    phases = timing.snapshot()
    phases["other"] = max(0.0, timings["total"] - sum(phases.values()))  # orchestration, thresholds, ...
    timings["phases"] = phases
    write_json(run.out / "timings.json", timings)
    write_report(run.out, results, timings, claims, verdict, record.get("split_holdout"))
    return results, timings


def run_seeds(config: RunConfig, seeds: list[int]) -> tuple[dict, dict[int, dict[str, float]]]:
    """The study once per seed in ``<out>/seed-<n>/`` (features shared in ``<out>/cache/``), then
    ``<out>/aggregate.json`` and ``<out>/report.md``: mean, sd, min, max over seeds and the claims."""
    check_seeds(seeds)
    out = Path(config.out)
    per_seed, claims, timings = {}, {}, {}
    for seed in seeds:
        cfg = dataclasses.replace(config, out=out / f"seed-{seed}", seed=seed,
                                  feature_cache=config.feature_cache or out / "cache" / "features")
        results, timings[seed] = run_study(cfg)
        per_seed[seed] = results
        claims[seed] = json.loads((cfg.out / "claims.json").read_text())
    summary = aggregate(per_seed, claims)
    summary["timings"] = {str(s): t for s, t in timings.items()}
    write_json(out / "aggregate.json", summary)
    write_seeds_report(out, summary)
    return summary, timings
