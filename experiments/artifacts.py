"""Writing a scenario's artifacts: results JSON, thresholds, per-image CSV, summary CSV."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

from ad_core.data.io import atomic_open, bytes_sha256, write_json
from ad_core.errors import DatasetError
from experiments.readers import FileFormatError, open_regular, read_checksums, read_guard, read_results
from experiments.results import RECORDED, ScenarioResult

SUMMARY_COLUMNS = ("scenario", "method", "category", *RECORDED)
GUARD = "run_config.json"
CHECKSUMS = "checksums.json"  # SHA-256 of every results/<scenario>.json, recorded as it is written
log = logging.getLogger("ad-repro")


def _checksums(out: Path, strict: bool = False) -> dict[str, str]:
    """checksums.json of ``out`` ({} without one); a damaged one is an error when ``strict`` (a handed-over
    folder), else said in one line and taken as empty (the results it guarded are left out until rerun)."""
    try:
        return read_checksums(out / CHECKSUMS)
    except FileFormatError as exc:
        if strict:
            raise
        log.warning("results: %s; the results it guarded are left out until their scenarios are rerun", exc)
        return {}


def check_guard(out: Path, fingerprint: dict[str, object]) -> bool:
    """Refuse (DatasetError) when ``out`` holds a run of another configuration; True when ``out`` has
    no record yet (``write_guard`` then records this one).  Reads only: called before any write."""
    path = out / GUARD
    if not path.exists():
        return True
    try:
        stored = read_guard(path)
    except FileFormatError as exc:
        raise DatasetError(f"{exc}") from None
    if stored != fingerprint:
        diff = [k for k in sorted(set(stored) | set(fingerprint)) if stored.get(k) != fingerprint.get(k)]
        detail = "; ".join(f"{k}: {stored.get(k)!r} -> {fingerprint.get(k)!r}" for k in diff)
        raise DatasetError(
            f"{out} holds a run with another configuration ({detail}). Results of the two "
            "would mix: choose another --out, or delete that folder to start over."
        )
    return False


def write_guard(out: Path, fingerprint: dict[str, object]) -> None:
    """Pin ``out`` to this configuration (after ``check_guard`` found no record)."""
    write_json(out / GUARD, fingerprint)


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


def verified_results(out: Path, strict: bool = False) -> list[tuple[Path, dict]]:
    """(path, JSON) of every results/<scenario>.json in ``out`` whose bytes match the checksum this suite
    recorded when it wrote it and whose content is a results file (``readers.read_results``), in the
    study's scenario order.  Any other is left out, saying so in one line; ``strict`` (a handed-over
    folder: ``golden record``, ``compare``): a FileFormatError naming it instead."""
    from experiments.scenarios import SCENARIOS

    out = Path(out)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    paths = sorted((out / "results").glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    book, results = _checksums(out, strict), []
    for p in paths:
        try:
            data = open_regular(p, out)
            if book.get(p.relative_to(out).as_posix()) != hashlib.sha256(data).hexdigest():
                raise FileFormatError(f"{p}: does not match the checksum it was written with (edited, damaged or "
                                      "from another run); rerun its scenario to restore it")
            results.append((p, read_results(p, out, data)))
        except FileFormatError as exc:
            if strict:
                raise
            log.warning("results: %s (left out of summary.csv and report.md)", exc)
    return results


def load_results(out: Path, strict: bool = False) -> list[ScenarioResult]:
    """The verified results of ``out`` (``verified_results``) as ``ScenarioResult``s."""
    return [ScenarioResult.from_json(d) for _, d in verified_results(out, strict)]


def write_summary(out: Path) -> list[ScenarioResult]:
    """results/summary.csv over every results/<scenario>.json present (runs accumulate)."""
    results = load_results(out)
    _write_csv(out / "results" / "summary.csv", SUMMARY_COLUMNS, summary_rows(results))
    return results
