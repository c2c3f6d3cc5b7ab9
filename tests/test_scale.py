"""The 15-category scale benchmark at a small size: its synthetic data, one measured run, its curve and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ad_core.data.embedded import DEFECTS
from ad_core.data.io import read_mask
from ad_core.data.layouts.mvtec import discover_category
from ad_core.data.splits import make_splits
from ad_core.data.synthetic import MARKER, image_jobs, write_synthetic_mvtec
from ad_core.models.common import coreset_size

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_scale  # noqa: E402

pytestmark = pytest.mark.fast

TINY = {"bottle": {"train_good": 6, "test_good": 2, "test_defect": 7},
        "cable": {"train_good": 5, "test_good": 3, "test_defect": 4}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic_mvtec(tmp_path_factory.mktemp("syn") / "data", TINY, size=64)


def test_mvtec_counts_are_the_papers_totals():
    counts = bench_scale.mvtec_counts()
    assert len(counts) == 15
    totals = [sum(c[k] for c in counts.values()) for k in ("train_good", "test_good", "test_defect")]
    assert totals == [3629, 467, 1258]  # MVTec AD, Bergmann et al. CVPR 2019, Table 1


def test_defective_images_cycle_through_the_defect_types():
    jobs = image_jobs({"train_good": 2, "test_good": 1, "test_defect": 7})
    folders = [f for f, _, _ in jobs]
    assert folders[:3] == ["train/good", "train/good", "test/good"]
    assert folders[3:] == [f"test/{d}" for d in DEFECTS] + [f"test/{d}" for d in DEFECTS[:2]]
    assert ("test/scratch", "001.png", 1) in jobs and len(set(jobs)) == len(jobs)


def test_synthetic_set_reads_as_mvtec_with_its_counts_and_masks(tiny):
    for category, counts in TINY.items():
        files = discover_category(tiny, category)
        assert (len(files.train_good), len(files.test_good), len(files.test_anomalous)) == (
            counts["train_good"], counts["test_good"], counts["test_defect"])
        assert files.has_masks
        for sample in files.test_anomalous:
            mask = read_mask(sample.mask, (64, 64))
            assert mask.any() and not mask.all(), sample.relpath
        splits = make_splits(files)
        assert len(splits.train) == int(0.8 * counts["train_good"])


def test_synthetic_set_is_the_same_bytes_every_time_and_reused(tiny, tmp_path):
    again = write_synthetic_mvtec(tmp_path / "again", TINY, size=64)
    files = sorted(p.relative_to(tiny) for p in tiny.rglob("*.png"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert all((tiny / f).read_bytes() == (again / f).read_bytes() for f in files)
    first = (again / "bottle/train/good/000.png").stat().st_mtime_ns
    write_synthetic_mvtec(again, TINY, size=64)  # same record: nothing rewritten
    assert (again / "bottle/train/good/000.png").stat().st_mtime_ns == first
    assert json.loads((again / MARKER).read_text())["counts"] == TINY
    # a damaged file is noticed and the copy rebuilt to the same bytes
    damaged = again / "cable/test/good/001.png"
    damaged.write_bytes(b"not a png")
    write_synthetic_mvtec(again, TINY, size=64)
    assert damaged.read_bytes() == (tiny / "cable/test/good/001.png").read_bytes()
    # categories differ from one another (each its own photograph)
    a = (again / "bottle/train/good/000.png").read_bytes()
    assert a != (again / "cable/train/good/000.png").read_bytes()


def test_growth_exponent_recovers_a_power_law():
    x = [1e5, 3e5, 8e5, 2.3e6]
    assert bench_scale.growth_exponent(x, [2e-9 * v**2 for v in x]) == pytest.approx(2.0)
    assert bench_scale.growth_exponent(x, [3e-5 * v for v in x]) == pytest.approx(1.0)
    assert bench_scale.growth_exponent(x[:1], [1.0]) is None  # one point: no slope
    assert bench_scale.growth_exponent(x, [0.01, 0.01, 0.02, 1.0]) is None  # below 0.05 s: noise, left out


def test_one_measured_run_and_its_report(tiny, tmp_path):
    out = tmp_path / "unified-2"
    row = bench_scale.run_one(tiny, list(TINY), out, backbone="resnet18", image_size=64)
    train = sum(int(0.8 * c["train_good"]) for c in TINY.values())
    patches = train * 8 * 8  # ResNet layer2 at 64 px: an 8 x 8 grid
    assert (row["categories"], row["train_images"], row["train_patches"]) == (2, train, patches)
    assert row["memory_bank"] == coreset_size(patches, 0.05)
    assert row["phases"]["backbone"] > 0 and row["phases"]["coreset"] > 0
    assert 0.1 < row["peak_rss_gib"] < 64 and row["device"] == "cpu"
    assert 0 < max(row["peak_rss_by_phase"].values()) <= row["peak_rss_gib"] + 0.01  # sampled: at most the true peak
    assert json.loads((out / "scale_measurement.json").read_text()) == json.loads(json.dumps(row))
    cols = bench_scale.columns(row)
    assert sum(cols[k] for k in cols if k != "total excl. backbone") == pytest.approx(sum(row["phases"].values()))
    # a second size (its phases scaled) gives a curve with exponents, written between the markers
    bigger = {**row, "categories": 4, "train_patches": 4 * patches,
              "phases": {k: v * 16 for k, v in row["phases"].items()}}
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nbefore\n")
    bench_scale.replace_section(readme, bench_scale.table([bigger, row]))
    bench_scale.replace_section(readme, "updated\n\n" + bench_scale.table([row, bigger]))
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n") and text.count("<!-- scale:begin -->") == 1
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in lines[1:]] == ["| 2", "| 4", "| growth exponent (s ~ patches^b)"]
    exponents = lines[-1].split(" | ")[4:-1]
    coreset = list(cols).index("coreset")
    assert float(exponents[coreset]) == pytest.approx(2.0, abs=1e-6)  # 16x the seconds at 4x the patches
    assert "updated" in text and np.isfinite(row["wall_s"])


def test_anomalib_comparison_table_says_when_anomalib_was_stopped():
    ours = {"fit_s": 30.0, "total_s": 60.0, "auroc": 0.91234, "peak_rss_gib": 3.0}
    done = {"categories": 1, "train": 167, "test": 65, "ad_core": ours,
            "anomalib": {"fit_s": 500.0, "total_s": 600.0, "auroc": 0.9101, "peak_rss_gib": 5.0}}
    stopped = {**done, "categories": 3, "anomalib": {"timeout_s": 1800.0}}
    rows = bench_scale.anomalib_table([done, stopped]).splitlines()[2:]
    assert rows[0].split(" | ")[6:9] == ["0.100", "0.9123", "0.9101"]  # 60 s / 600 s
    assert "> 1800 (stopped)" in rows[1] and "< 0.033" in rows[1]  # 60 s / 1800 s: a bound, not a ratio


def test_a_finished_measurement_is_reused_only_with_todays_code_and_settings():
    state = bench_scale.code_state({"feature_memory_gb": 1.0, "device": "auto"})
    assert "ad_core/models/kernels/knn_cpu.py" in state["code"] and "benchmarks/bench_scale.py" in state["code"]
    assert bench_scale.stale(state, state) is None
    edited = {**state, "code": {**state["code"], "ad_core/models/kernels/knn_cpu.py": "0" * 16}}
    assert "code changed: ad_core/models/kernels/knn_cpu.py" in bench_scale.stale(edited, state)
    other = {**state, "settings": {"feature_memory_gb": 0.0, "device": "auto"}}
    assert "feature_memory_gb" in bench_scale.stale(other, state)
    assert bench_scale.stale(None, state)  # measured before measurements recorded their code: not reused
