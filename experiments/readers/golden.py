"""Golden files and their drift records (``golden/<dataset>-<backbone>/``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ad_core.data.records import (
    Number,
    Real,
    Strict,
    absent,
    check_format,
    convert,
    open_regular,
    parse_json,
    read,
    refuse,
)
from experiments.readers.core import plain_name

# -- golden files ---------------------------------------------------------------------------
GOLDEN_FORMAT = 1  # golden files written before the field existed are format 1


class Tolerance(Strict):
    """One kind of number's allowance: ``abs`` + ``rel`` x |expected|, its rule and why (experiments.gates.goldens
    writes the allowance first: ``{"abs": 0, "rule": ..., "why": ...}``)."""

    abs: Real | None = Field(None, exclude_if=absent)
    rel: Real | None = Field(None, exclude_if=absent)
    rule: str
    why: str


class RecordedVerdict(Strict):
    preset: str
    status: str
    summary: str


class GoldenFile(Strict):
    """``golden/<dataset>-<backbone>/<scenario>.json``, built by experiments.gates.goldens.payload: its fields in
    the order written (the verdict only where a gate recorded one)."""

    format: int = GOLDEN_FORMAT
    dataset: str | None = None
    backbone: str | None = None
    weights_source: str | None = None
    scenario: str
    seed: int | None = None
    tolerances: dict[str, Tolerance]
    methods: dict[str, dict[str, dict[str, Number]]]
    recorded_with_verdict: RecordedVerdict | None = Field(None, exclude_if=absent)


# --regen-all, not --force-regen: pytest-regressions rewrites on --force-regen only after a comparison
# failed, and a golden that cannot be read is never compared (tests/test_golden_regression.py)
GOLDEN_FIX = "record the golden again (ad-repro golden record RUN DEST, or pytest --regen-all)"


def _finite_nonnegative(path: Path, where: str, v: float | None) -> None:

    if v is not None and not (math.isfinite(v) and v >= 0):
        raise refuse(path, f"{where} must be a finite number >= 0, got {v}", GOLDEN_FIX)


def read_golden(path: str | Path, within: str | Path | None = None) -> GoldenFile:
    """One golden file, strictly: its schema, its format version, tolerances finite and >= 0."""
    path = Path(path)
    golden = read(path, GoldenFile, GOLDEN_FIX, within)
    check_format(path, golden.format, GOLDEN_FORMAT, "golden file")
    if not any(golden.methods.values()):
        raise refuse(path, "field methods holds no numbers", GOLDEN_FIX)
    plain_name(golden.scenario, "field scenario", str(path))
    for name, tol in golden.tolerances.items():
        if tol.abs is None and tol.rel is None:
            raise refuse(path, f"field tolerances.{name} has neither 'abs' nor 'rel'", GOLDEN_FIX)
        _finite_nonnegative(path, f"field tolerances.{name}.abs", tol.abs)
        _finite_nonnegative(path, f"field tolerances.{name}.rel", tol.rel)
    return golden


Drift = Annotated[Real, Field(ge=0, allow_inf_nan=False)]  # a largest |a - b|: finite, >= 0


class DriftPart(Strict):
    max_abs: dict[str, Drift] = {}
    max_rel: dict[str, Drift] = {}


class DriftHow(Strict):
    how: str = "not measured"  # what differed between the runs compared


class DriftFile(DriftPart, DriftHow):  # pydantic puts the last base's fields first: how, max_abs, max_rel
    """A golden folder's ``drift.json``, written by benchmarks/measure_drift.py: the largest drift between
    faithful runs, over all and (where measured so) per scenario."""

    by_scenario: dict[str, DriftPart] | None = Field(None, exclude_if=absent)


def read_drift(path: str | Path) -> dict[str, Any]:
    """``drift.json``, strictly: every drift a finite number >= 0 (``how``, ``max_abs`` and ``max_rel``
    always in the record returned; ``by_scenario`` where the file has it)."""
    path = Path(path)
    return convert(path, parse_json(path, open_regular(path, path.parent)), DriftFile, GOLDEN_FIX).to_json()
