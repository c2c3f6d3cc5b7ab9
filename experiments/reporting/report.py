"""report.md: every table and figure of a run in one page."""

from __future__ import annotations

from pathlib import Path

from ad_core.data.io import atomic_open
from ad_core.metrics import METRICS, metric_names
from experiments.definition.methods import METHODS
from experiments.evaluation.results import ScenarioResult
from experiments.evaluation.statistics import claim_line
from experiments.gates.verdict import verdict_section


def _cell(v: object) -> str:
    return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def shown_metrics(values: list[dict[str, float | None]], names: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The metrics a table shows: every one, but a benchmark's own measure only where some row has it (another
    benchmark's measure would be a column of dashes)."""
    return [k for k in (metric_names() if names is None else names)
            if not METRICS[k].benchmark_specific or any(v.get(k) is not None for v in values)]


def summary_table(results: list[ScenarioResult]) -> list[str]:
    """Macro means of every (scenario, method)."""
    means = [(r.scenario, m.key, m.mean()) for r in results for m in r.methods]
    names = shown_metrics([mean for _, _, mean in means])
    return _table(["scenario", "method", *names], [[sc, key, *[mean[k] for k in names]] for sc, key, mean in means])


def _interval(ci: dict | None, key: str) -> str:
    if not ci or key not in ci:
        return "—"
    return f"[{ci[key][0]:.3f}, {ci[key][1]:.3f}]"


def _config_lines(cfg: dict) -> list[str]:
    methods = " ".join(f"{name}: {cfg[name]}." for name in METHODS if name in cfg)
    geometry = (f"{cfg['image_size']}×{cfg['image_size']}" if not cfg.get("resize") else
                f"resize {cfg['resize']} then centre crop {cfg['image_size']}×{cfg['image_size']}")
    return [f"Preset **{cfg.get('preset', 'study')}** (split: {cfg.get('split', 'study')}). "
            f"Dataset **{cfg['dataset']}** ({cfg['data_root']}), categories {', '.join(cfg['categories'])}; "
            f"backbone **{cfg['backbone']}** ({cfg['weights_source']}); seed {cfg['seed']}; "
            f"{geometry}.", "", f"{methods} Threshold: {cfg['threshold']}.", ""]


def holdout_lines(holdout: dict[str, str] | None) -> list[str]:
    """The hold-out rule of each category whose reader held its test normals out (provenance's ``split_holdout``,
    the text its splits file states), one line per rule; none where the data's own folders or split file set them."""
    by_rule: dict[str, list[str]] = {}
    for category, rule in (holdout or {}).items():
        by_rule.setdefault(rule, []).append(category)
    return [line for rule, cats in by_rule.items()
            for line in (f"Test normals of {', '.join(cats)} held out by the data's reader, not by an official split: "
                         f"{rule}.", "")]


def scenario_section(r: ScenarioResult, timings: dict[str, float]) -> list[str]:
    lines = [f"## {r.scenario}", "", r.description + ".", ""]
    if r.scenario in timings:
        lines += [f"Wall time of this scenario in the last run: {timings[r.scenario]:.1f} s.", ""]
    for m in r.methods:
        first = next(iter(m.per_class.values()))
        extra = [k for k in ("memory_bank_size", "fit_seconds") if getattr(first, k) is not None]
        names = shown_metrics([pc.metrics for pc in m.per_class.values()])
        columns = [*names, "threshold", *extra]
        rows = [[cat, *[pc.metrics.get(k) for k in names], pc.threshold, *[getattr(pc, k) for k in extra]]
                for cat, pc in m.per_class.items()]
        lines += [f"### {m.key}", "", *_table(["class", *columns], rows), ""]
        if first.ci95:
            shown = [k for k in names if k in first.ci95]
            ci_rows = [[cat, *[_interval(pc.ci95, k) for k in shown]] for cat, pc in m.per_class.items()]
            lines += ["95% bootstrap intervals (1,000 stratified resamples of the test images):", "",
                      *_table(["class", *shown], ci_rows), ""]
        if m.pooled is not None:
            lines += ["Pooled over classes (one global τ): " + ", ".join(
                f"{k} {_cell(m.pooled.metrics.get(k))}" for k in names), ""]
        if m.shortcut is not None:
            sep = m.feature_separation
            lines += [f"Feature separation of the classes: silhouette {_cell(sep['silhouette'])}, "
                      f"nearest-centroid accuracy {_cell(sep['centroid_accuracy'])}.", ""]
        by_defect = [(c, d, n) for c, pc in m.per_class.items() for d, n in (pc.by_defect or {}).items()]
        if by_defect:
            shown = shown_metrics([n for _, _, n in by_defect], [k.name for k in METRICS.values() if k.per_defect])
            lines += ["Per defect type (the test normals against each type alone; PRO on the union of each image's "
                      "region masks, sPRO where the benchmark defines it on its regions):", "",
                      *_table(["class", "defect type", *shown], [[c, d, *[n.get(k) for k in shown]]
                                                                  for c, d, n in by_defect]), ""]
        rules = {c: pc.threshold_rule for c, pc in m.per_class.items() if pc.threshold_rule}
        if rules and any(not rule.startswith("f1 ") for rule in rules.values()):  # the study's rule needs no word
            lines += ["τ set by: " + "; ".join(f"{c}: {rule}" for c, rule in rules.items()) + ".", ""]
        absent = {pc.image_metrics_absent for pc in m.per_class.values()} - {None}
        if absent:
            lines += ["Image ranking metrics (AUROC, AUPRC, F1, F1-max) undefined: "
                      + "; ".join(sorted(a.rstrip(".") for a in absent)) + ".", ""]
        absent = {pc.pixel_metrics_absent for pc in m.per_class.values()} - {None}
        if absent:
            lines += ["Pixel metrics absent: " + "; ".join(sorted(absent)) + ".", ""]
    for fig in r.figures:
        lines += [f"![{Path(fig).stem}]({fig})", ""]
    return lines


def write_report(out: Path, results: list[ScenarioResult], timings: dict[str, float],
                 claims: list[dict] | None = None, verdict: dict | None = None,
                 holdout: dict[str, str] | None = None) -> Path:
    """report.md over every scenario result of ``out`` (``results`` as ``load_results`` returns them);
    ``holdout``: provenance's ``split_holdout`` ({category: the reader's hold-out rule})."""
    lines = ["# ad-repro report", ""]
    if results:
        lines += _config_lines(results[0].config)
    lines += holdout_lines(holdout)
    lines += ["## Summary (macro mean over classes)", "", *summary_table(results), ""]
    if verdict is not None:
        lines += verdict_section(verdict)
    if timings.get("phases"):
        lines += phase_section(timings)
    if claims:
        lines += ["## The study's claims, with evidence", "",
                  "Each claim as a difference of macro means (side a minus side b) on the same test images, "
                  "with its paired 95% bootstrap interval; it holds when the interval lies above 0.", "",
                  *[f"- {claim_line(c)}" for c in claims], ""]
    for r in results:
        lines += scenario_section(r, timings)
    path = out / "report.md"
    with atomic_open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def phase_section(timings: dict) -> list[str]:
    """Wall time per phase of the last run (exclusive seconds, summed over the study)."""
    total = timings["total"]
    rows = [[name, f"{sec:.1f}", f"{100 * sec / total:.1f}%"] for name, sec in timings["phases"].items()]
    return ["## Where the time went", "", f"The last run: {total:.1f} s wall, {timings['features_computed']} images "
            "through the backbone. Seconds per phase, summed over every scenario (exclusive: a phase inside "
            "another is not counted twice).", "", *_table(["phase", "seconds", "share"], rows), ""]


def write_seeds_report(out: Path, summary: dict) -> Path:
    """report.md of a multi-seed study: each number's spread over seeds and the claims per seed."""
    seeds = summary["seeds"]
    lines = ["# ad-repro report: several seeds", "",
             f"Seeds {', '.join(map(str, seeds))}: splits, shift parameters, JL projection, coreset start "
             "and PaDiM dims follow the seed; each seed's full report is in `seed-<n>/report.md`.", "",
             "## The study's claims over seeds", ""]
    for c in summary["claims"]:
        per = "; ".join(f"seed {s}: {v['difference']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
                        for s, v in c["per_seed"].items())
        lines += [f"- **{c['claim']}**: mean {c['mean_difference']:+.3f} (sd {c['sd_difference']:.3f}); holds "
                  f"(interval above 0) in {c['holds_in']}/{c['n_seeds']} seeds, positive in "
                  f"{c['positive_in']}/{c['n_seeds']}. {per}.", ""]
    lines += ["## Macro means over seeds (mean ± sd [min, max])", ""]
    rows = []
    for scenario, methods in summary["metrics"].items():
        for key, entries in methods.items():
            mean = entries.get("mean", {})
            rows.append([scenario, key, *[_spread(mean.get(k)) for k in metric_names()]])
    lines += _table(["scenario", "method", *metric_names()], rows) + [""]
    path = out / "report.md"
    with atomic_open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def _spread(s: dict | None) -> str:
    if not s:
        return "—"
    return f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"
