"""Writing a scenario's artifacts: results JSON, thresholds, per-image CSV, summary CSV."""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

from ad_core.data.io import atomic_open, bytes_sha256, write_json
from ad_core.errors import DatasetError
from ad_core.metrics import recorded_names
from experiments.evaluation.results import ScenarioResult
from experiments.readers import FileFormatError, open_regular, read_checksums, read_guard, read_results
from experiments.readers.run_folder import Checksums, GuardFile

ENTRY_COLUMNS = ("scenario", "method", "category")  # summary.csv's first columns, then every recorded number
GUARD = "run_config.json"
FIGURES = "visualizations"
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
    write_json(out / GUARD, GuardFile(fingerprint).model_dump())


def _write_csv(path: Path, header: tuple[str, ...] | list[str], rows: list[list[object]]) -> None:
    with atomic_open(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def remove_stale(paths: Iterable[Path], folder: Path, what: str) -> list[Path]:
    """Remove ``paths`` (files below ``folder`` that a rerun owns and no longer produces: a removed image's
    submission map, a figure its earlier results named), saying so in one line; the removed files."""
    stale = sorted(p for p in paths if p.is_file() or p.is_symlink())  # a link is removed, never followed
    for p in stale:
        p.unlink()
    if stale:
        shown = ", ".join(p.relative_to(folder).as_posix() for p in stale[:3]) + (" ..." if len(stale) > 3 else "")
        log.warning("%s: removed %d %s of an earlier run that this run no longer produces (%s)", folder, len(stale),
                    what, shown)
    return stale


def prune(folder: Path, keep: set[Path], what: str) -> list[Path]:
    """``remove_stale`` of every file below ``folder`` (a folder this run owns whole) but ``keep`` (what it
    wrote) and another writer's temporary files."""
    if not folder.is_dir():
        return []
    return remove_stale((p for p in folder.rglob("*") if p not in keep and not p.name.startswith(".")), folder, what)


def recorded_figures(out: Path, scenario: str) -> set[Path]:
    """The figure files the verified results of ``scenario`` in ``out`` name (each one plain name inside
    ``visualizations/``: a file's content never names what is removed elsewhere); empty when none."""
    path = out / "results" / f"{scenario}.json"
    if not path.is_file():
        return set()
    try:
        data = open_regular(path, out)
        if _checksums(out).get(path.relative_to(out).as_posix()) != hashlib.sha256(data).hexdigest():
            return set()
        figures = read_results(path, out, data).get("figures") or []
    except FileFormatError:
        return set()
    return {out / FIGURES / parts[1] for parts in (str(f).split("/") for f in figures)
            if len(parts) == 2 and parts[0] == FIGURES and parts[1] not in ("", ".", "..")}


def write_scenario(out: Path, result: ScenarioResult) -> dict[str, object]:
    """Write results/<scenario>.json, thresholds/<scenario>.json and scores/<scenario>/*.csv; remove the
    score files and the figures its earlier results named (``recorded_figures``) that it no longer has."""
    public = result.to_json()
    path = out / "results" / f"{result.scenario}.json"
    remove_stale(recorded_figures(out, result.scenario) - {out / f for f in result.figures}, out / FIGURES,
                 "figure(s)")
    write_json(path, public)
    book = Checksums({**_checksums(out), path.relative_to(out).as_posix(): bytes_sha256(path)})
    write_json(out / CHECKSUMS, book.model_dump())
    write_json(out / "thresholds" / f"{result.scenario}.json", result.thresholds())
    csvs = set()
    for m in result.methods:
        for cat, scores in m.per_image.items():
            tau = m.thresholds[cat]
            rows = [[p, int(y), f"{s:.8g}", int(s >= tau)]
                    for p, y, s in zip(scores.relpaths, scores.labels, scores.scores)]
            csvs.add(out / "scores" / result.scenario / f"{m.slug}_{cat}.csv")
            _write_csv(out / "scores" / result.scenario / f"{m.slug}_{cat}.csv",
                       ("relpath", "label", "score", "predicted_anomalous"), rows)
    prune(out / "scores" / result.scenario, csvs, "score file(s)")
    return public


def summary_rows(results: list[ScenarioResult]) -> list[list[object]]:
    """summary.csv's rows: (scenario, method key, class or mean, recorded numbers) of every scenario."""
    return [[r.scenario, key, entry, *[_fmt(numbers[k]) for k in recorded_names()]]
            for r in results for key, entry, numbers in r.entries()]


def _fmt(v: object) -> object:
    return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)


def verified_results(out: Path, strict: bool = False) -> list[tuple[Path, dict]]:
    """(path, JSON) of every results/<scenario>.json in ``out`` whose bytes match the checksum this suite
    recorded when it wrote it and whose content is a results file (``readers.read_results``), in the
    study's scenario order.  Any other is left out, saying so in one line; ``strict`` (a handed-over
    folder: ``golden record``, ``compare``): a FileFormatError naming it instead."""
    from experiments.definition.scenarios import SCENARIOS

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
    _write_csv(out / "results" / "summary.csv", (*ENTRY_COLUMNS, *recorded_names()), summary_rows(results))
    return results
