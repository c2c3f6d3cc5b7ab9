"""A run folder's files: results, checksums, provenance, the configuration guard."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, RootModel, create_model

from ad_core.data.records import Count, Number, Strict, absent, check_format, convert, open_regular, parse_json, refuse
from ad_core.metrics.registry import EVALUATED, of_levels
from experiments.readers.core import plain_name

# -- run folders: results/<scenario>.json, checksums.json, provenance.json, run_config.json ---
RESULTS_FORMAT = 1
PROVENANCE_FORMAT = 1
RUN_FIX = "it was edited, damaged or written by another version: rerun the run (or ask for its folder again)"
HEX64 = re.compile(r"[0-9a-f]{64}")


def class_result_fields() -> tuple[Any, dict[str, Any]]:
    """(confusion's type, {field: (type, default)}) of a class result besides its recorded numbers: the writer's
    own field types (``ClassResult``), in its order."""
    import typing
    from dataclasses import fields

    from experiments.evaluation.results import OWN_FIELDS, ClassResult

    hints = typing.get_type_hints(ClassResult, include_extras=True)
    extras = {f.name: (hints[f.name], None) for f in fields(ClassResult) if f.name not in (*OWN_FIELDS, "confusion")}
    return hints["confusion"], extras


class ShortcutFile(Strict):
    cross_class_confusion: dict[str, dict[str, Number]]
    feature_separation: dict[str, Number]


@lru_cache(maxsize=8)
def results_schema(recorded: tuple[tuple[str, bool], ...]) -> type[Strict]:
    """The schema of ``results/<scenario>.json`` for the registered numbers ``recorded``: (name, required)
    in registry order, each a number or null; the study's first ones are required, later ones (absent
    from older files) optional."""
    study = {name: (Number, ...) for name, required in recorded if required}
    later = {name: (Number, None) for name, required in recorded if not required}
    confusion, extras = class_result_fields()
    class_file = create_model("ClassResultFile", __base__=Strict, **study, confusion=(confusion, ...), **later,
                              **extras)
    method_file = create_model("MethodResultFile", __base__=Strict, method=(str, ...), coreset_ratio=(Number, ...),
                               per_class=(dict[str, class_file], ...), mean=(dict[str, Number], ...),
                               pooled=(class_file | None, None), shortcut=(ShortcutFile | None, None))
    return create_model("ResultsFile", __base__=Strict, __doc__="``results/<scenario>.json``",
                        scenario=(str, ...), description=(str, ...), config=(dict[str, Any], ...),
                        methods=(dict[str, method_file], ...), figures=(list[str], []), format=(int, RESULTS_FORMAT))


def registered_results_schema() -> type[Strict]:
    """``results_schema`` of the metrics registered now (a metric registered later is read too)."""
    import ad_core.metrics.catalog  # noqa: F401  (registers the study's metrics; sklearn loads on the first read)

    return results_schema(tuple((m.name, m.origin == "study") for m in of_levels(*EVALUATED, "calibration")))


def _figure_path(path: Path, figure: str) -> None:
    """A figure is a path inside the run's ``visualizations/`` (the report links it; nothing else)."""
    parts = figure.split("/")
    if parts[0] != "visualizations" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or "\\" in figure:
        raise refuse(path, f"field figures holds {figure[:60]!r}, not a path inside visualizations/", RUN_FIX)


def read_results(path: str | Path, within: str | Path | None = None, data: bytes | None = None) -> dict[str, Any]:
    """One results file, strictly: its schema and format, its scenario named as its file (a plain name).

    ``data``: its bytes where the caller has read them (to check their checksum); returns the JSON (for
    ``ScenarioResult.from_json``), without its ``format`` field."""
    path = Path(path)
    value = parse_json(path, open_regular(path, within) if data is None else data)
    parsed = convert(path, value, registered_results_schema(), RUN_FIX)
    check_format(path, parsed.format, RESULTS_FORMAT, "results file")
    if parsed.scenario != path.stem:
        raise refuse(path, f"field scenario is {parsed.scenario[:60]!r}, not the file's name {path.stem!r}", RUN_FIX)
    plain_name(parsed.scenario, "scenario", str(path))
    for figure in parsed.figures:
        _figure_path(path, figure)
    if not any(m.per_class for m in parsed.methods.values()):
        raise refuse(path, "no method has a class result: nothing to read", RUN_FIX)
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
            raise refuse(path, f"key {name[:60]!r} is not results/<scenario>.json", RUN_FIX)
        plain_name(parts[1], "results file", str(path))
        if not HEX64.fullmatch(digest):
            raise refuse(path, f"field {name} is not a SHA-256 (64 hex digits)", RUN_FIX)
    return book


class Checksums(RootModel[dict[str, str]]):
    """``checksums.json`` (experiments.records.artifacts.write_scenario): {``results/<scenario>.json``: SHA-256 hex}."""

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
    """``provenance.json``, built by experiments.records.provenance.collect: its fields in the order written (every
    one but ``data_digest`` may be absent from an older record; the bit-depth rule and its exceptions are
    written where a category has 16-bit-container images, since issue 31; the split hold-out rule where a
    category's reader held test normals out)."""

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
    # {category: the rule by which the data's reader held its test normals out} (VisA without its split file,
    # the text the splits file states): written where a category has one
    split_holdout: dict[str, str] | None = Field(None, exclude_if=absent)
    data_digest: str
    data_files: Count | None = None
    image_bit_depth: dict[str, Annotated[int, Field(ge=1, le=16)] | None] = {}
    image_bit_depth_rule: str | None = Field(None, exclude_if=absent)
    image_bit_depth_exceptions: dict[str, dict[str, str]] | None = Field(None, exclude_if=absent)
    command: list[str] = []


def read_provenance(path: str | Path) -> dict[str, Any]:
    """``provenance.json``, strictly (FileNotFoundError passes: the caller says what its absence means)."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    parsed = convert(path, value, ProvenanceFile, RUN_FIX)
    check_format(path, parsed.format, PROVENANCE_FORMAT, "provenance record")
    if not HEX64.fullmatch(parsed.data_digest):
        raise refuse(path, "field data_digest is not a SHA-256 (64 hex digits)", RUN_FIX)
    return value


class GuardFile(RootModel[dict[str, Any]]):
    """``run_config.json`` (experiments.records.artifacts.write_guard): the configuration fingerprint a ``--out`` is
    pinned to, a JSON object."""

    model_config = ConfigDict(strict=True)


def read_guard(path: str | Path) -> dict[str, Any]:
    """``run_config.json``: the configuration a ``--out`` folder is pinned to (a JSON object)."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent), GUARD_FIX)
    if not isinstance(value, dict):
        raise refuse(path, f"is not a JSON object (got {type(value).__name__})", GUARD_FIX)
    return convert(path, value, GuardFile, GUARD_FIX).root


GUARD_FIX = ("it was truncated or edited: delete it (the next run records its configuration again) or choose "
             "another --out")
