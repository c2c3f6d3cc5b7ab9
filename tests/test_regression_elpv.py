"""Regression gates on real industrial images: the ELPV solar cells (PyPI elpv-dataset).

The study's settings (seed 42, 224, coreset 5%, k=9, 100 PaDiM dims, 1000-step tau) with the
offline ImageNet-pretrained EfficientNet-Lite0; image-level labels only, so pixel metrics
must stay null (a null stays null in every golden).  Goldens: golden/elpv-efficientnet_lite0/<scenario>.json.
- ``regression`` (CI): the ``clean`` scenario, both methods, mono and poly, fresh from the images;
- ``elpv``: every scenario (a full run is ~21 min on 2 CPU cores, over CI's budget):
  ``pytest -m elpv``; ``AD_REPRO_ELPV_OUT=<folder>`` reuses (and keeps) a run folder.
  It is also part of ``pytest -m gpu``, the full reproduction on every dataset at hand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.definition.config import RunConfig
from experiments.study import run_study
from tests.golden import cases, check_golden


def elpv_run(tmp_path_factory, name: str, scenarios: list[str] | None):
    pytest.importorskip("elpv_dataset", reason="the ELPV images come from the elpv-dataset package: "
                        "pip install -e '.[test]' (or '.[elpv]')")
    out = Path(os.environ.get("AD_REPRO_ELPV_OUT") or tmp_path_factory.mktemp(name))
    results, _ = run_study(RunConfig(out=out, dataset="elpv", scenarios=scenarios, progress=False))
    return {r.scenario: r for r in results}


@pytest.fixture(scope="session")
def elpv_clean_results(tmp_path_factory):
    return elpv_run(tmp_path_factory, "elpv-clean-run", ["clean"])


@pytest.mark.regression
@pytest.mark.parametrize("scenario", cases(["clean"]))
def test_elpv_clean_matches_golden(golden_regression, elpv_clean_results, scenario):
    check_golden(golden_regression, "elpv-efficientnet_lite0", elpv_clean_results[scenario])


@pytest.fixture(scope="session")
def elpv_results(tmp_path_factory):
    return elpv_run(tmp_path_factory, "elpv-run", None)


@pytest.mark.elpv
@pytest.mark.gpu
@pytest.mark.parametrize("scenario", cases())
def test_elpv_study_matches_golden(golden_regression, elpv_results, scenario):
    check_golden(golden_regression, "elpv-efficientnet_lite0", elpv_results[scenario])
