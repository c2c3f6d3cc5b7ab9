"""End-to-end regression gates: every scenario x method x entry (class, mean, pooled, shortcut) against its golden.

- ``regression`` (CI): the embedded default dataset with the offline ImageNet-pretrained
  EfficientNet-Lite0, the study's settings otherwise (seed 42, 224, coreset 5%, k=9,
  100 PaDiM dims, 1000-step tau, PRO to 0.3).
- ELPV (real solar-cell images): tests/test_regression_elpv.py;
- ``gpu``: the user's MVTec AD ($MVTEC_ROOT) with the study's ResNet-50; weights from the
  torchvision cache or $AD_REPRO_WEIGHTS; goldens in golden/mvtec-resnet50/ are recorded on
  the user's machine (``--regen-all``), since MVTec AD cannot be obtained here.
Each gate runs the study once per session; with xdist, `--dist loadfile` keeps this file on one worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ad_core.data.embedded import CATEGORIES as EMBEDDED
from experiments.runner import RunConfig
from experiments.study import run_study
from tests.golden import cases, check_golden

STUDY_CATEGORIES = ("hazelnut", "carpet", "zipper")


@pytest.fixture(scope="session")
def embedded_results(tmp_path_factory):
    results, _ = run_study(RunConfig(out=tmp_path_factory.mktemp("embedded-run"), progress=False))
    return {r["scenario"]: r for r in results}


@pytest.mark.regression
@pytest.mark.parametrize("scenario,method,entry", cases(EMBEDDED))
def test_embedded_study_matches_golden(request, embedded_results, scenario, method, entry):
    check_golden(request, "embedded-efficientnet_lite0", embedded_results[scenario], method, entry)


@pytest.fixture(scope="session")
def mvtec_results(mvtec_root, tmp_path_factory):
    out = Path(os.environ.get("AD_REPRO_GPU_OUT") or tmp_path_factory.mktemp("mvtec-run"))
    config = RunConfig(out=out, data=str(mvtec_root), categories=list(STUDY_CATEGORIES), backbone="resnet50",
                       weights=os.environ.get("AD_REPRO_WEIGHTS"), progress=False)
    results, _ = run_study(config)
    return {r["scenario"]: r for r in results}


@pytest.mark.gpu
@pytest.mark.parametrize("scenario,method,entry", cases(STUDY_CATEGORIES))
def test_mvtec_study_matches_golden(request, mvtec_results, scenario, method, entry):
    check_golden(request, "mvtec-resnet50", mvtec_results[scenario], method, entry)
