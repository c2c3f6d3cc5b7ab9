"""report.md: every table and figure of a run in one page."""

from __future__ import annotations

from pathlib import Path

from ad_core.data.io import atomic_write_bytes

SHOWN = ("image_auroc", "image_auprc", "image_f1", "image_accuracy", "pixel_auroc", "pro")


def _cell(v: object) -> str:
    return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def summary_table(results: list[dict]) -> list[str]:
    rows = [[r["scenario"], method, *[m["mean"].get(k) for k in SHOWN]]
            for r in results for method, m in r["methods"].items()]
    return _table(["scenario", "method", *SHOWN], rows)


def write_report(out: Path, results: list[dict], timings: dict[str, float]) -> Path:
    lines = ["# ad-repro report", ""]
    if results:
        cfg = results[0]["config"]
        lines += [f"Dataset **{cfg['dataset']}** ({cfg['data_root']}), categories {', '.join(cfg['categories'])}; "
                  f"backbone **{cfg['backbone']}** ({cfg['weights_source']}); seed {cfg['seed']}; "
                  f"{cfg['image_size']}×{cfg['image_size']}.", "",
                  f"PatchCore: {cfg['patchcore']}. PaDiM: {cfg['padim']}. Threshold: {cfg['threshold']}.", ""]
    lines += ["## Summary (macro mean over classes)", "", *summary_table(results), ""]
    figs = out / "visualizations"
    for r in results:
        name = r["scenario"]
        lines += [f"## {name}", "", r["description"] + ".", ""]
        if name in timings:
            lines += [f"Wall time of this scenario in the last run: {timings[name]:.1f} s.", ""]
        for method, m in r["methods"].items():
            extra = ["memory_bank_size", "fit_seconds"] if "memory_bank_size" in next(iter(m["per_class"].values())) else []
            rows = [[cat, *[pc.get(k) for k in (*SHOWN, "threshold", *extra)]] for cat, pc in m["per_class"].items()]
            lines += [f"### {method}", "", *_table(["class", *SHOWN, "threshold", *extra], rows), ""]
            if "pooled" in m:
                lines += ["Pooled over classes (one global τ): " + ", ".join(
                    f"{k} {_cell(m['pooled'].get(k))}" for k in SHOWN), ""]
            if "shortcut" in m:
                sep = m["shortcut"]["feature_separation"]
                lines += [f"Feature separation of the classes: silhouette {_cell(sep['silhouette'])}, "
                          f"nearest-centroid accuracy {_cell(sep['centroid_accuracy'])}.", "",
                          f"![cross-class confusion](visualizations/cross_class_{method}.png)", ""]
            absent = {pc.get("pixel_metrics_absent") for pc in m["per_class"].values()} - {None}
            if absent:
                lines += ["Pixel metrics absent: " + "; ".join(sorted(absent)) + ".", ""]
        shown = [figs / f"roc_{name}.png", figs / f"confusion_{name}.png", *sorted(figs.glob(f"overlays_{name}_*.png"))]
        for fig in shown:
            if fig.is_file():
                lines += [f"![{fig.stem}](visualizations/{fig.name})", ""]
        if name == "coreset_ablation" and (figs / "coreset_tradeoff.png").is_file():
            lines += ["![coreset trade-off](visualizations/coreset_tradeoff.png)", ""]
    path = out / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path
