"""Golden files and their drift records (``golden/<dataset>-<backbone>/``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from experiments.readers.core import (
    Number,
    Strict,
    check_format,
    convert,
    open_regular,
    parse_json,
    plain_name,
    read,
    refusal,
)

# -- golden files ---------------------------------------------------------------------------
GOLDEN_FORMAT = 1  # golden files written before the field existed are format 1


class Tolerance(Strict):
    """One kind of number's allowance: ``abs`` + ``rel`` x |expected|, its rule and why."""

    rule: str
    why: str
    abs: float | None = None
    rel: float | None = None


class RecordedVerdict(Strict):
    preset: str
    status: str
    summary: str


class GoldenFile(Strict):
    """``golden/<dataset>-<backbone>/<scenario>.json`` (experiments.goldens.payload)."""

    scenario: str
    tolerances: dict[str, Tolerance]
    methods: dict[str, dict[str, dict[str, Number]]]
    format: int = GOLDEN_FORMAT
    dataset: str | None = None
    backbone: str | None = None
    weights_source: str | None = None
    seed: int | None = None
    recorded_with_verdict: RecordedVerdict | None = None


# --regen-all, not --force-regen: pytest-regressions rewrites on --force-regen only after a comparison
# failed, and a golden that cannot be read is never compared (tests/test_golden_regression.py)
GOLDEN_FIX = "record the golden again (ad-repro golden record RUN DEST, or pytest --regen-all)"


def _finite_nonnegative(path: Path, where: str, v: float | None) -> None:

    if v is not None and not (math.isfinite(v) and v >= 0):
        raise refusal(path, f"{where} must be a finite number >= 0, got {v}", GOLDEN_FIX)


def read_golden(path: str | Path, within: str | Path | None = None) -> GoldenFile:
    """One golden file, strictly: its schema, its format version, tolerances finite and >= 0."""
    path = Path(path)
    golden = read(path, GoldenFile, GOLDEN_FIX, within)
    check_format(path, golden.format, GOLDEN_FORMAT, "golden file")
    if not any(golden.methods.values()):
        raise refusal(path, "field methods holds no numbers", GOLDEN_FIX)
    plain_name(golden.scenario, "field scenario", str(path))
    for name, tol in golden.tolerances.items():
        if tol.abs is None and tol.rel is None:
            raise refusal(path, f"field tolerances.{name} has neither 'abs' nor 'rel'", GOLDEN_FIX)
        _finite_nonnegative(path, f"field tolerances.{name}.abs", tol.abs)
        _finite_nonnegative(path, f"field tolerances.{name}.rel", tol.rel)
    return golden


class DriftPart(Strict):
    max_abs: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}
    max_rel: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}


class DriftFile(DriftPart):
    """A golden folder's ``drift.json`` (benchmarks/measure_drift.py): the largest drift between faithful runs."""

    how: str = "not measured"
    by_scenario: dict[str, DriftPart] = {}


def read_drift(path: str | Path) -> dict[str, Any]:
    """``drift.json``, strictly: every drift a finite number >= 0."""
    path = Path(path)
    return convert(path, parse_json(path, open_regular(path, path.parent)), DriftFile, GOLDEN_FIX).model_dump()
