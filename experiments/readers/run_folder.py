"""A run folder's files: results, checksums, provenance, the configuration guard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, RootModel

from experiments.readers.core import (
    Count,
    Number,
    Strict,
    check_format,
    convert,
    open_regular,
    parse_json,
    plain_name,
    refusal,
)

# -- run folders: results/<scenario>.json, checksums.json, provenance.json, run_config.json ---
RESULTS_FORMAT = 1
PROVENANCE_FORMAT = 1
RUN_FIX = "it was edited, damaged or written by another version: rerun the run (or ask for its folder again)"
HEX64 = re.compile(r"[0-9a-f]{64}")


def _confusion(v: object) -> object:
    ok = (isinstance(v, list) and len(v) == 2 and all(isinstance(r, list) and len(r) == 2 for r in v)
          and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for r in v for n in r))
    if not ok:
        raise ValueError("must be [[TN, FP], [FN, TP]] of integers >= 0")
    return v


Confusion = Annotated[object, BeforeValidator(_confusion)]


class UncertainGroupFile(Strict):
    """One group of images of unsure label (experiments.evaluate.evaluate_uncertain)."""

    n: Count
    auroc_vs_test_normals: Number
    median_score: Number = None
    flagged_fraction: Number = None


class ClassResultFile(Strict):
    image_auroc: Number
    image_auprc: Number
    image_f1: Number
    image_accuracy: Number
    threshold: Number
    pixel_auroc: Number
    pro: Number
    confusion: Confusion
    image_f1_max: Number = None
    pixel_ap: Number = None
    pixel_f1_max: Number = None
    pixel_metrics_absent: str | None = None
    image_metrics_absent: str | None = None
    threshold_rule: str | None = None
    by_defect: dict[str, dict[str, Number]] | None = None
    uncertain: dict[str, UncertainGroupFile | Number] | None = None
    memory_bank_size: Count | None = None
    fit_seconds: Number = None
    ci95: dict[str, list[Number]] | None = None


class ShortcutFile(Strict):
    cross_class_confusion: dict[str, dict[str, Number]]
    feature_separation: dict[str, Number]


class MethodResultFile(Strict):
    method: str
    coreset_ratio: Number
    per_class: dict[str, ClassResultFile]
    mean: dict[str, Number]
    pooled: ClassResultFile | None = None
    shortcut: ShortcutFile | None = None


class ResultsFile(Strict):
    """``results/<scenario>.json`` (experiments.results.ScenarioResult.to_json)."""

    scenario: str
    description: str
    config: dict[str, Any]
    methods: dict[str, MethodResultFile]
    figures: list[str] = []
    format: int = RESULTS_FORMAT


def _figure_path(path: Path, figure: str) -> None:
    """A figure is a path inside the run's ``visualizations/`` (the report links it; nothing else)."""
    parts = figure.split("/")
    if parts[0] != "visualizations" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or "\\" in figure:
        raise refusal(path, f"field figures holds {figure[:60]!r}, not a path inside visualizations/", RUN_FIX)


def read_results(path: str | Path, within: str | Path | None = None, data: bytes | None = None) -> dict[str, Any]:
    """One results file, strictly: its schema and format, its scenario named as its file (a plain name).

    ``data``: its bytes where the caller has read them (to check their checksum); returns the JSON (for
    ``ScenarioResult.from_json``), without its ``format`` field."""
    path = Path(path)
    value = parse_json(path, open_regular(path, within) if data is None else data)
    parsed = convert(path, value, ResultsFile, RUN_FIX)
    check_format(path, parsed.format, RESULTS_FORMAT, "results file")
    if parsed.scenario != path.stem:
        raise refusal(path, f"field scenario is {parsed.scenario[:60]!r}, not the file's name {path.stem!r}", RUN_FIX)
    plain_name(parsed.scenario, "scenario", str(path))
    for figure in parsed.figures:
        _figure_path(path, figure)
    if not any(m.per_class for m in parsed.methods.values()):
        raise refusal(path, "no method has a class result: nothing to read", RUN_FIX)
    value.pop("format", None)
    return value


def read_checksums(path: str | Path) -> dict[str, str]:
    """``checksums.json``: {``results/<scenario>.json``: SHA-256 hex} ({} where the file is missing)."""
    path = Path(path)
    try:
        value = parse_json(path, open_regular(path, path.parent))
    except FileNotFoundError:
        return {}
    book = convert(path, value, Checksums, RUN_FIX).root
    for name, digest in book.items():
        parts = name.split("/")
        if len(parts) != 2 or parts[0] != "results" or not parts[1].endswith(".json"):
            raise refusal(path, f"key {name[:60]!r} is not results/<scenario>.json", RUN_FIX)
        plain_name(parts[1], "results file", str(path))
        if not HEX64.fullmatch(digest):
            raise refusal(path, f"field {name} is not a SHA-256 (64 hex digits)", RUN_FIX)
    return book


class Checksums(RootModel[dict[str, str]]):
    model_config = ConfigDict(strict=True)


class GitState(Strict):
    commit: str
    dirty: bool
    diff_sha256: str | None = None


class CpuInfo(Strict):
    model: str
    machine: str
    cores: Count
    flags: list[str]
    bfloat16_products: bool


class GpuInfo(Strict):
    name: str
    cuda: str | None = None


class ProvenanceFile(Strict):
    """``provenance.json`` (experiments.provenance.collect)."""

    data_digest: str
    format: int = PROVENANCE_FORMAT
    ad_repro: str | None = None
    git: GitState | None = None
    python: str | None = None
    libraries: dict[str, str | None] = {}
    cpu: CpuInfo | None = None
    gpu: GpuInfo | None = None
    device: str | None = None
    threads: Count | None = None
    executor: str | None = None
    knn_backend: str | None = None
    data_root: str | None = None
    layout: str | None = None
    data_files: Count | None = None
    image_bit_depth: dict[str, Annotated[int, Field(ge=1, le=16)] | None] = {}
    image_bit_depth_rule: str | None = None  # written since issue 31 (absent from older records)
    image_bit_depth_exceptions: dict[str, dict[str, str]] = {}
    command: list[str] = []


def read_provenance(path: str | Path) -> dict[str, Any]:
    """``provenance.json``, strictly (FileNotFoundError passes: the caller says what its absence means)."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    parsed = convert(path, value, ProvenanceFile, RUN_FIX)
    check_format(path, parsed.format, PROVENANCE_FORMAT, "provenance record")
    if not HEX64.fullmatch(parsed.data_digest):
        raise refusal(path, "field data_digest is not a SHA-256 (64 hex digits)", RUN_FIX)
    return value


def read_guard(path: str | Path) -> dict[str, Any]:
    """``run_config.json``: the configuration a ``--out`` folder is pinned to (a JSON object)."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent), GUARD_FIX)
    if not isinstance(value, dict):
        raise refusal(path, f"is not a JSON object (got {type(value).__name__})", GUARD_FIX)
    return value


GUARD_FIX = ("it was truncated or edited: delete it (the next run records its configuration again) or choose "
             "another --out")
