"""Writing a scenario's artifacts: results JSON, thresholds, per-image CSV, summary CSV."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from ad_core.data.io import atomic_open, bytes_sha256, write_json
from ad_core.errors import DatasetError
from experiments.results import RECORDED, ScenarioResult

SUMMARY_COLUMNS = ("scenario", "method", "category", *RECORDED)
GUARD = "run_config.json"
CHECKSUMS = "checksums.json"  # SHA-256 of every results/<scenario>.json, recorded as it is written
log = logging.getLogger("ad-repro")


def _checksums(out: Path) -> dict[str, str]:
    try:
        book = json.loads((out / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return {}
    return book if isinstance(book, dict) else {}


def guard_config(out: Path, fingerprint: dict[str, object]) -> None:
    """Refuse to mix two configurations in one output folder."""
    path = out / GUARD
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != fingerprint:
            diff = [k for k in sorted(set(stored) | set(fingerprint)) if stored.get(k) != fingerprint.get(k)]
            detail = "; ".join(f"{k}: {stored.get(k)!r} -> {fingerprint.get(k)!r}" for k in diff)
            raise DatasetError(
                f"{out} holds a run with another configuration ({detail}). Results of the two "
                "would mix: choose another --out, or delete that folder to start over."
            )
    else:
        write_json(path, fingerprint)


def _write_csv(path: Path, header: tuple[str, ...] | list[str], rows: list[list[object]]) -> None:
    with atomic_open(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_scenario(out: Path, result: ScenarioResult) -> dict[str, object]:
    """Write results/<scenario>.json, thresholds/<scenario>.json and scores/<scenario>/*.csv."""
    public = result.to_json()
    path = out / "results" / f"{result.scenario}.json"
    write_json(path, public)
    write_json(out / CHECKSUMS, {**_checksums(out), path.relative_to(out).as_posix(): bytes_sha256(path)})
    write_json(out / "thresholds" / f"{result.scenario}.json", result.thresholds())
    for m in result.methods:
        for cat, scores in m.per_image.items():
            tau = m.thresholds[cat]
            rows = [[p, int(y), f"{s:.8g}", int(s >= tau)]
                    for p, y, s in zip(scores.relpaths, scores.labels, scores.scores)]
            _write_csv(out / "scores" / result.scenario / f"{m.slug}_{cat}.csv",
                       ("relpath", "label", "score", "predicted_anomalous"), rows)
    return public


def summary_rows(results: list[ScenarioResult]) -> list[list[object]]:
    """summary.csv's rows: (scenario, method key, class or mean, RECORDED numbers) of every scenario."""
    return [[r.scenario, key, entry, *[_fmt(numbers[k]) for k in SUMMARY_COLUMNS[3:]]]
            for r in results for key, entry, numbers in r.entries()]


def _fmt(v: object) -> object:
    return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)


def load_results(out: Path) -> list[ScenarioResult]:
    """Every results/<scenario>.json in --out whose bytes match the checksum recorded when this suite
    wrote it, read into results, in the study's scenario order; any other is left out, saying so."""
    from experiments.scenarios import SCENARIOS

    order = {name: i for i, name in enumerate(SCENARIOS)}
    paths = sorted((out / "results").glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    book, results = _checksums(out), []
    for p in paths:
        if book.get(p.relative_to(out).as_posix()) != bytes_sha256(p):
            log.warning("results: %s does not match the checksum it was written with (edited, damaged or from "
                        "another run): left out of summary.csv and report.md; rerun its scenario to restore it", p)
            continue
        results.append(ScenarioResult.from_json(json.loads(p.read_text())))
    return results


def write_summary(out: Path) -> list[ScenarioResult]:
    """results/summary.csv over every results/<scenario>.json present (runs accumulate)."""
    results = load_results(out)
    _write_csv(out / "results" / "summary.csv", SUMMARY_COLUMNS, summary_rows(results))
    return results
