"""The Dask executor (experiments/execution/executors.py): a 2-worker LocalCluster computes every feature
extraction, fit and scored split, and the study's results equal the in-process executor's."""

from __future__ import annotations

import logging

import pytest
import torch

from ad_core.data.embedded import EmbeddedSpec, make_embedded_dataset
from conftest import metrics_only
from experiments.definition.config import RunConfig
from experiments.study import run_study

pytest.importorskip("distributed", reason="the dask executor needs dask[distributed]: pip install -e '.[test]'")

# every kind of unit: both domains, per-class and unified models, a coreset sweep, uncertain-free data
# (absolute_unified's unified models are fitted on both domains' training images)
SCENARIOS = ["clean", "shift_threshold_only", "absolute_unified", "coreset_ablation"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    spec = EmbeddedSpec(n_train_good=10, n_test_good=4, n_per_defect=1, size=96)
    return make_embedded_dataset(tmp_path_factory.mktemp("tiny"), spec, categories=("brick", "coffee"))


def config(out, data, **kw) -> RunConfig:
    return RunConfig(out=out, data=str(data), backbone="efficientnet_lite0", progress=False, scenarios=SCENARIOS, **kw)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_in_process_results(data, tmp_path, capfd, caplog):
    # the same thread count in every process: it decides float sums' order (experiments/execution/executors.py)
    before = torch.get_num_threads()
    local, local_t = run_study(config(tmp_path / "local", data, threads=2))
    assert torch.get_num_threads() == before  # --threads holds inside the run only
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        dask, dask_t = run_study(config(tmp_path / "dask", data, executor="dask", workers=2, threads=2))
    # Dask's own INFO lines (scheduler, workers, nanny: ~33 a run) are silenced, in this process and the workers'
    chatter = [r.getMessage() for r in caplog.records
               if r.name.startswith("distributed") and r.levelno < logging.WARNING]
    printed = [ln for ln in capfd.readouterr().err.splitlines() if "distributed." in ln and "INFO" in ln]
    assert chatter == [] and printed == [], (chatter[:3], printed[:3])
    assert metrics_only(dask) == metrics_only(local)
    same = ("thresholds/clean.json", "thresholds/coreset_ablation.json", "scores/absolute_unified/padim_brick.csv")
    for name in same:
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    # the workers did the work: every image through the backbone there, no fit or scoring in the client
    assert dask_t["features_computed"] == local_t["features_computed"] == 2 * 19 + 2 * 19
    assert dask_t["executor"]["kind"] == "dask" and dask_t["executor"]["tasks"] > 20
    worker = dask_t["executor"]["worker_phases"]
    assert worker["backbone"] > 0 and worker["coreset"] > 0 and worker["padim fit"] > 0
    client = dask_t["phases"]
    assert "backbone" not in client and "coreset" not in client and "padim fit" not in client


@pytest.mark.fast
def test_threads_must_be_positive():
    from experiments.execution.executors import thread_count

    with pytest.raises(ValueError, match="--threads must be a positive number"):
        with thread_count(0):
            pass
