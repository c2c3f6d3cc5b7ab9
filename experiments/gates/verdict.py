"""Reproduction verdict: a run's clean-scenario numbers against the published ones (docs/protocol.md §12).

For each method of the run, the preset's published table whose setting is closest to the
run's (fewest differing fields) is the reference.  Per category of the run that the table
covers and per metric it publishes: reference, measured, difference, band, and reproduced
when |difference| <= band (better than published counts as not reproduced too: the check is
two-sided) -- and only on the published data: a category whose test set is not MVTec AD's
size (a folder merely named ``bottle``) is within band or not, but never reproduced.  A
verdict is **indicative only** when the run's setting differs from the table's (each
difference listed) or the preset has no published numbers of its own (the ``study`` preset).
"""

from __future__ import annotations

from experiments.definition.presets import get_preset
from experiments.evaluation.references import (
    MVTEC_AD,
    ReferenceTable,
    load_tables,
    published_counts,
    unreferenced,
)
from experiments.evaluation.results import ClassResult, MethodResult, ScenarioResult

VERDICT_FILE = "verdict.json"
SCENARIO = "clean"  # train on train/good, test on the clean test set: what the papers publish
# one model over every class (the multi-class setting): held against the published multi-class tables,
# whatever the preset (ADer's benchmark: experiments/published/ader.json)
UNIFIED = "unified"
SHOWN_FAILURES = 4  # failing entries named in the one-line summary

# the setting fields compared per method (a table lists those it fixes)
COMMON = ("backbone", "weights", "resize", "image_size", "split", "unified")
METHOD_FIELDS = {"patchcore": ("coreset_ratio", "reweighting", "embedding", "blur_sigma"),
                 "padim": ("n_features", "blur_sigma")}


def run_setting(config: dict, method: str) -> dict[str, object]:
    """The run's setting in the references' vocabulary, from a result's ``config``."""
    source = str(config.get("weights_source", ""))
    setting = {"method": method, "backbone": config["backbone"],
               "weights": "random" if source.startswith("random") else "imagenet",
               "resize": config.get("resize"), "image_size": config["image_size"],
               "split": config.get("split", "study"), "unified": bool(config.get("unified", False))}
    params = config.get(method) or {}
    setting.update({k: params.get(k) for k in METHOD_FIELDS.get(method, ())})
    return setting


def setting_differences(setting: dict, table: ReferenceTable) -> list[dict[str, object]]:
    fields = [f for f in (*COMMON, *METHOD_FIELDS.get(table.method, ())) if f in table.setting]
    return [{"field": f, "run": setting.get(f), "published": table.setting[f]}
            for f in fields if setting.get(f) != table.setting[f]]


def closest_table(setting: dict, candidates: list[ReferenceTable]) -> tuple[ReferenceTable, list[dict]]:
    """The candidate with the fewest setting differences (the preset's order breaks ties)."""
    scored = [(len(d), i, t, d) for i, t in enumerate(candidates) for d in [setting_differences(setting, t)]]
    _, _, table, diffs = min(scored, key=lambda x: (x[0], x[1]))
    return table, diffs


def benchmark_name(benchmark: str) -> str:
    """A benchmark as its paper names it ("MVTec AD", "BTAD"): its layout's title without the citation."""
    from ad_core.data.layouts import LAYOUTS

    return LAYOUTS[benchmark].title.split(" (")[0] if benchmark in LAYOUTS else benchmark


def data_differences(per_class: dict[str, ClassResult], split: str, benchmark: str = MVTEC_AD) -> dict[str, str]:
    """Categories whose test set is not the published data's size (e.g. a folder merely named ``bottle``): where
    the benchmark's counts are recorded and the split's test set follows from them (the whole test folder; MVTec
    AD's study split: 30% of each category's defects moved to validation)."""
    counts, _ = published_counts(benchmark)
    out = {}
    for cat, pc in per_class.items():
        expected = counts.get(cat)
        if expected is None or (split == "study" and benchmark != MVTEC_AD):
            continue
        n_defect = expected["test_defect"] - (expected["test_defect"] * 3 // 10 if split == "study" else 0)
        n_good, n_bad = pc.test_sizes
        if (n_good, n_bad) != (expected["test_good"], n_defect):
            out[cat] = (f"test set {n_good} good + {n_bad} defective, {benchmark_name(benchmark)}'s {split} split has "
                        f"{expected['test_good']} + {n_defect}")
    return out


def _entries(per_class: dict[str, ClassResult], table: ReferenceTable,
             other_data: dict[str, str]) -> list[dict[str, object]]:
    rows = []
    counts, _ = published_counts(table.benchmark)
    for cat, pc in per_class.items():
        numbers = pc.recorded()
        for metric, published in table.values[cat].items():
            band = table.bands[metric]
            # its test set's granularity where the benchmark's counts are recorded, else the band's floor
            allowed = band.allowed(counts[cat]) if cat in counts else band.abs
            measured = numbers.get(metric)
            row = {"category": cat, "metric": metric, "reference": published, "measured": measured,
                   "difference": None if measured is None else measured - published, "band": allowed,
                   "band_rule": band.rule(), "band_why": band.why}
            row["within_band"] = measured is not None and abs(measured - published) <= allowed + 1e-12
            # the run's own sampling uncertainty: its 95% bootstrap interval (None without --bootstrap)
            interval = (pc.ci95 or {}).get(metric)
            row["interval"] = interval
            row["within_interval"] = None if interval is None else bool(interval[0] <= published <= interval[1])
            row["decided_by"] = ("band" if row["within_band"] else "interval" if row["within_interval"] else
                                 "neither band nor interval" if interval is not None else "band (no interval)")
            row["reproduced"] = (row["within_band"] or bool(row["within_interval"])) and cat not in other_data
            if measured is None:
                row["note"] = pc.pixel_metrics_absent or "not measured"
            elif cat in other_data:
                row["note"] = f"not {benchmark_name(table.benchmark)}'s {cat}: {other_data[cat]}"
            rows.append(row)
    return rows


def _method_verdict(m: MethodResult, config: dict, candidates: list[ReferenceTable],
                    indicative: str | None) -> dict[str, object]:
    table, diffs = closest_table(run_setting(config, m.method), candidates)
    per_class = {c: pc for c, pc in m.per_class.items() if c in table.values}
    data = data_differences(per_class, config.get("split", "study"), table.benchmark)
    entries = _entries(per_class, table, data)
    reasons = ([indicative] if indicative else []) + (
        ["setting differs: " + "; ".join(f"{d['field']} {d['run']} (published {d['published']})" for d in diffs)]
        if diffs else [])
    n_ok = sum(e["reproduced"] for e in entries)
    return {"reference": table.id, "reference_name": table.name, "benchmark": table.benchmark,
            "source": table.citation(),
            "setting_notes": table.setting_notes, "definitions": table.definitions,
            "setting_differences": diffs, "data_differences": [f"{c}: {why}" for c, why in data.items()],
            "indicative": bool(reasons),
            "indicative_reasons": reasons, "reproduced": n_ok, "total": len(entries),
            "status": "reproduced" if n_ok == len(entries) else "not reproduced", "entries": entries}


def _summary_line(method: str, v: dict) -> str:
    line = f"{method} vs {v['reference_name']} ({v['reference']}): {v['reproduced']}/{v['total']} reproduced"
    if v["data_differences"]:
        line += (f"; data differs from {benchmark_name(v.get('benchmark', MVTEC_AD))} (never a reproduction): "
                 + "; ".join(v["data_differences"]))
    def one(e: dict) -> str:
        if e["measured"] is None:
            return f"{e['category']} {e['metric']} not measured ({e.get('note')})"
        interval = f", 95% interval [{e['interval'][0]:.4f}, {e['interval'][1]:.4f}]" if e.get("interval") else ""
        return (f"{e['category']} {e['metric']} {e['measured']:.4f} vs {e['reference']:.4f} "
                f"({e['difference']:+.4f}, band {e['band']:.4f}{interval})")

    def shown(entries: list[dict]) -> str:
        parts = [one(e) for e in entries[:SHOWN_FAILURES]]
        return ", ".join(parts) + (f", and {len(entries) - SHOWN_FAILURES} more" if len(entries) > SHOWN_FAILURES
                                   else "")

    failing = [e for e in v["entries"] if not e["within_band"] and not e.get("within_interval")]
    if failing:
        line += "; outside the band and the run's 95% interval: " + shown(failing)
    by_interval = [e for e in v["entries"] if not e["within_band"] and e.get("within_interval")]
    if by_interval:
        line += "; outside the band, but the published value lies in the run's 95% interval: " + shown(by_interval)
    if v["indicative"]:
        line += " -- indicative only: " + "; ".join(v["indicative_reasons"])
    return line


def reference_tables(benchmark: str, preset_tables: tuple[str, ...], multi_class: bool) -> list[ReferenceTable]:
    """The tables a run is held to: of its benchmark; the preset's (one model per class), or every multi-class
    table of the benchmark (ADer's)."""
    tables = load_tables()
    chosen = [t for t in tables.values() if t.setting.get("unified")] if multi_class else [
        tables[i] for i in preset_tables]
    return [t for t in chosen if t.benchmark == benchmark]


def make_verdict(clean: ScenarioResult, multi_class: bool = False) -> dict[str, object]:
    """The verdict of one run from the result of its ``clean`` scenario (the preset's tables), or of its
    ``unified`` scenario (``multi_class``: the benchmark's multi-class tables), on the run's benchmark."""
    config = dict(clean.config)
    preset = get_preset(config.get("preset", "study"))
    if multi_class:
        config["unified"] = True  # the scenario's one model over every class is part of its setting
    benchmark = str(config.get("layout", MVTEC_AD))
    tables = reference_tables(benchmark, preset.references, multi_class)
    categories = clean.categories()
    covered = {c for t in tables for c in t.values}
    missing = [c for c in categories if c not in covered]
    methods = {}
    for m in clean.methods:
        candidates = [t for t in tables if t.method == m.method and m.coreset_ratio is None]
        if candidates and any(c in covered for c in m.per_class):
            methods[m.key] = _method_verdict(m, config, candidates, preset.indicative)
    out: dict[str, object] = {"preset": preset.name, "scenario": clean.scenario, "methods": methods,
                              "no_references_for": missing}
    if not methods:
        out["status"] = "no references"
        whose = "the multi-class setting" if multi_class else f"preset {preset.name!r}"
        if tables:
            held = sorted({c for t in tables for c in t.values})
            why = f"the published tables of {whose} cover {benchmark}'s {', '.join(held)}"
        else:
            why = unreferenced(benchmark, multi_class) or f"no published table of {whose} for {benchmark}"
        out["summary"] = f"no references for these categories: {', '.join(categories)} ({why})"
        return out
    all_ok = all(v["status"] == "reproduced" for v in methods.values())
    out["status"] = ("reproduced" if all_ok else "not reproduced") + (
        " (indicative)" if any(v["indicative"] for v in methods.values()) else "")
    lines = [_summary_line(k, v) for k, v in methods.items()]
    if missing:
        lines.append(f"no references for {', '.join(missing)}")
    out["summary"] = " | ".join(lines)
    return out


def verdict_section(verdict: dict) -> list[str]:
    """The "Reproduction verdict" section of report.md."""
    lines = ["## Reproduction verdict", "", f"Preset **{verdict['preset']}**, scenario `{verdict['scenario']}`: "
             f"**{verdict['status']}**.", "", verdict["summary"], ""]
    for key, v in verdict.get("methods", {}).items():
        lines += [f"### {key} vs {v['reference_name']}", "", f"Source: {v['source']}.", ""]
        if v["indicative_reasons"]:
            lines += ["Indicative only: " + "; ".join(v["indicative_reasons"]) + ".", ""]
        if v["data_differences"]:
            lines += [f"Data differs from {benchmark_name(v.get('benchmark', MVTEC_AD))} (never a reproduction): "
                      + "; ".join(v["data_differences"]) + ".", ""]
        lines += ["| category | metric | published | measured | difference | band | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for e in v["entries"]:
            measured = "—" if e["measured"] is None else f"{e['measured']:.3f}"
            diff = "—" if e["difference"] is None else f"{e['difference']:+.3f}"
            word = "reproduced" if e["reproduced"] else (
                "within band, other data" if e["within_band"] else "NOT reproduced")
            lines.append(f"| {e['category']} | {e['metric']} | {e['reference']:.3f} | {measured} | {diff} | "
                         f"{e['band']:.3f} | {word} |")
        bands = {e["metric"]: (e["band_rule"], e["band_why"]) for e in v["entries"]}
        lines += ["", "Bands (allowed |difference|, the larger of):", "",
                  *[f"- {m}: {rule}: {why}." for m, (rule, why) in bands.items()], ""]
    if "unified" in verdict:  # the multi-class setting: its own section, one level down
        lines += [line.replace("## Reproduction verdict", "### Reproduction verdict: the multi-class setting")
                  if line.startswith("## ") else ("#" + line if line.startswith("### ") else line)
                  for line in verdict_section(verdict["unified"])]
    return lines
