"""report.md: every table and figure of a run in one page."""

from __future__ import annotations

from pathlib import Path

from ad_core.data.io import atomic_open
from ad_core.metrics import METRIC_NAMES
from experiments.methods import METHODS
from experiments.results import ScenarioResult


def _cell(v: object) -> str:
    return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def summary_table(results: list[dict]) -> list[str]:
    """Macro means of every (scenario, method) in results JSON form."""
    rows = [[r["scenario"], method, *[m["mean"].get(k) for k in METRIC_NAMES]]
            for r in results for method, m in r["methods"].items()]
    return _table(["scenario", "method", *METRIC_NAMES], rows)


def _config_lines(cfg: dict) -> list[str]:
    methods = " ".join(f"{name}: {cfg[name]}." for name in METHODS if name in cfg)
    return [f"Dataset **{cfg['dataset']}** ({cfg['data_root']}), categories {', '.join(cfg['categories'])}; "
            f"backbone **{cfg['backbone']}** ({cfg['weights_source']}); seed {cfg['seed']}; "
            f"{cfg['image_size']}×{cfg['image_size']}.", "", f"{methods} Threshold: {cfg['threshold']}.", ""]


def scenario_section(r: ScenarioResult, timings: dict[str, float]) -> list[str]:
    lines = [f"## {r.scenario}", "", r.description + ".", ""]
    if r.scenario in timings:
        lines += [f"Wall time of this scenario in the last run: {timings[r.scenario]:.1f} s.", ""]
    for m in r.methods:
        first = next(iter(m.per_class.values()))
        extra = [k for k in ("memory_bank_size", "fit_seconds") if getattr(first, k) is not None]
        columns = [*METRIC_NAMES, "threshold", *extra]
        rows = [[cat, *[getattr(pc, k) for k in columns]] for cat, pc in m.per_class.items()]
        lines += [f"### {m.key}", "", *_table(["class", *columns], rows), ""]
        if m.pooled is not None:
            lines += ["Pooled over classes (one global τ): " + ", ".join(
                f"{k} {_cell(getattr(m.pooled, k))}" for k in METRIC_NAMES), ""]
        if m.shortcut is not None:
            sep = m.shortcut["feature_separation"]
            lines += [f"Feature separation of the classes: silhouette {_cell(sep['silhouette'])}, "
                      f"nearest-centroid accuracy {_cell(sep['centroid_accuracy'])}.", ""]
        absent = {pc.pixel_metrics_absent for pc in m.per_class.values()} - {None}
        if absent:
            lines += ["Pixel metrics absent: " + "; ".join(sorted(absent)) + ".", ""]
    for fig in r.figures:
        lines += [f"![{Path(fig).stem}]({fig})", ""]
    return lines


def write_report(out: Path, results: list[dict], timings: dict[str, float]) -> Path:
    """report.md over every results JSON of ``out`` (``results`` as ``load_results`` returns them)."""
    lines = ["# ad-repro report", ""]
    if results:
        lines += _config_lines(results[0]["config"])
    lines += ["## Summary (macro mean over classes)", "", *summary_table(results), ""]
    for r in results:
        lines += scenario_section(ScenarioResult.from_json(r), timings)
    path = out / "report.md"
    with atomic_open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path
