"""The golden gates' glue: which scenarios a gate checks, and where their goldens are.

``golden/<dataset>-<backbone>/<scenario>.json``, one file (and one test) per scenario, checked
through the ``golden_regression`` fixture (``experiments/gates/golden_regression.py``, built on
pytest-regressions): ``--force-regen`` rewrites a differing golden and fails, ``--regen-all``
rewrites every golden and passes, a differing golden leaves ``<scenario>.obtained.json``
beside it.  A regenerated golden's tolerances are derived anew from the run's own set sizes
and the folder's ``drift.json`` (``benchmarks/measure_drift.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.definition.scenarios import SCENARIOS

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"


def labels(folder: str) -> tuple[str, str]:
    """(dataset, backbone) of a ``<dataset>-<backbone>`` golden folder, as its files state them."""
    return tuple(folder.rsplit("-", 1)) if folder.count("-") == 1 else (folder, "")  # type: ignore[return-value]


def check_golden(golden_regression, folder: str, result, verdict: dict | None = None) -> None:
    """Hold one scenario's result against ``golden/<folder>/<scenario>.json`` (every method and entry)."""
    dataset, backbone = labels(folder)
    golden_regression.check_result(result, GOLDEN_ROOT / folder, dataset=dataset, backbone=backbone, verdict=verdict)


def cases(scenarios=tuple(SCENARIOS)) -> list:
    return [pytest.param(s, id=s) for s in scenarios]
