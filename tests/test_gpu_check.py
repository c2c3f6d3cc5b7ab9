"""benchmarks/gpu_check.sh, the prepared GPU check: on this CPU machine it names every step and its
command (--dry-run) and refuses clearly, before installing anything, where there is no CUDA GPU."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ("install", "cuda", "knn", "embedded", "elpv-clean", "scale")


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PATH": path} if path else {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_dry_run_names_every_step_with_its_timeout_and_command():
    res = run("--dry-run")
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == list(STEPS)
    commands = dict(ln.split(" ", 2)[1:] for ln in lines)
    assert "pip install -q -e '.[gpu]'" in commands["install"]
    assert "-m gpu tests/test_knn_gpu.py" in commands["knn"] and "AD_REPRO_REQUIRE_CUDA=1" in commands["embedded"]
    assert "tests/test_regression_elpv.py -k clean" in commands["elpv-clean"]
    assert "bench_scale.py --sizes 1 3 --device cuda" in commands["scale"]
    timeouts = [int(ln.split("(timeout ")[1].split()[0]) for ln in lines]
    assert all(t > 0 for t in timeouts) and "budget 480 s" in res.stdout
    no_install = run("--dry-run", "--no-install", "--python", "python3")
    assert "step install (skipped: --no-install)" in no_install.stdout and ".venv-gpu" not in no_install.stdout


def test_the_gpu_tests_it_runs_exist_under_the_gpu_marker():
    """The knn and embedded steps select tests that exist (a renamed test would make the step pass empty)."""
    import sys

    for target, marker, key in (("tests/test_knn_gpu.py", "gpu", None), ("tests/test_regression.py", "gpu", "embedded"),
                                ("tests/test_regression_elpv.py", "regression", "clean")):
        cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, target]
        res = subprocess.run([*cmd, *(["-k", key] if key else [])], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
        collected = [ln for ln in res.stdout.splitlines() if "::" in ln]
        assert collected, f"{target} -m {marker}: nothing collected\n{res.stdout[-500:]}"


def test_without_cuda_it_refuses_before_installing_anything(tmp_path):
    had_venv = (ROOT / ".venv-gpu").exists()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    for path in ("/usr/bin:/bin", f"{fake}:/usr/bin:/bin"):  # no nvidia-smi at all; one that finds no GPU
        res = run(path=path)
        assert res.returncode == 2
        assert res.stderr.strip() == ("gpu_check: no CUDA GPU here (nvidia-smi finds none): this check runs on a "
                                      "CUDA machine; see --dry-run")
        assert res.stdout == ""
    assert (ROOT / ".venv-gpu").exists() == had_venv, "the refusal came after an install"
    assert run("--bogus").returncode == 2
