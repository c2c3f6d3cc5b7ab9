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


def run(*args: str, path: str | None = None, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PATH": path} if path else {}), **env}
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
    assert "bench_scale.py --sizes 1 3 --device cuda --work <fresh mktemp -d folder>/scale-work" in commands["scale"]
    assert "/tmp/ad-repro-gpu" not in res.stdout and "logs <fresh mktemp -d folder>" in res.stdout
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


# -- issue 31: option values, and logs never written through a link ------------------------------
@pytest.mark.parametrize("args", [["--budget"], ["--python"], ["--logs"], ["--budget", "--dry-run"],
                                  ["--python", ""]])
def test_an_option_without_its_value_is_one_line_and_exit_2(args):
    res = run(*args)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"gpu_check: {args[0]} needs a value (see --help)\n"


@pytest.mark.parametrize("budget", ["abc", "1.5", "-3", "0", "010"])
def test_a_budget_that_is_not_a_whole_number_of_seconds_is_refused(budget):
    res = run("--dry-run", "--budget", budget)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (f"gpu_check: --budget needs a whole number of seconds above 0, got '{budget}' "
                          "(see --help)\n")


@pytest.fixture
def stub_gpu(tmp_path) -> dict[str, str]:
    """PATH with an ``nvidia-smi`` that finds one GPU (and, with PLANT set, plants ``$PLANT/cuda.log`` ->
    ``$VICTIM`` once the logs folder has been checked, as a race would), TMPDIR in ``tmp_path``."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text('#!/bin/sh\nif [ "$1" = -L ]; then echo "GPU 0: stub"; '
                                     '[ -n "${PLANT:-}" ] && ln -s "$VICTIM" "$PLANT/cuda.log"; exit 0; fi\necho 0\n')
    (fake / "nvidia-smi").chmod(0o755)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {"path": f"{fake}:/usr/bin:/bin", "TMPDIR": str(tmp)}


FAST = ("--no-install", "--python", "/bin/false", "--budget", "30")  # the cuda step fails at once, then it stops


def test_logs_go_into_a_fresh_private_folder(stub_gpu, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    old = tmp_path / "tmp" / "ad-repro-gpu-check"  # the fixed folder of before, with a planted link
    old.mkdir()
    (old / "cuda.log").symlink_to(victim)
    res = run(*FAST, **stub_gpu)
    assert res.returncode == 1 and "| cuda | FAIL (exit 1) |" in res.stdout, res.stderr
    logs = Path(res.stdout.split("logs: ")[1].split("/<step>.log")[0])
    assert logs.parent == tmp_path / "tmp" and logs.name.startswith("ad-repro-gpu-check.") and logs != old
    assert logs.stat().st_mode & 0o777 == 0o700 and sorted(p.name for p in logs.iterdir()) == ["cuda.log", "cuda.mem"]
    assert victim.read_text() == "keep" and (old / "cuda.log").is_symlink()
    assert "/tmp/ad-repro-gpu" not in SCRIPT.read_text()


def test_a_named_logs_folder_is_used_when_new_or_empty_and_refused_otherwise(stub_gpu, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    new = tmp_path / "new" / "logs"
    res = run(*FAST, "--logs", str(new), **stub_gpu)
    assert res.returncode == 1 and f"logs: {new}/<step>.log" in res.stdout and (new / "cuda.log").is_file()
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "cuda.log").symlink_to(victim)
    for how in ({"args": ("--logs", str(planted))}, {"env": {"GPU_CHECK_LOGS": str(planted)}}):
        res = run(*FAST, *how.get("args", ()), **stub_gpu, **how.get("env", {}))
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr == (f"gpu_check: logs folder {planted} already holds files: name a new or empty folder "
                              "(or leave --logs out for a fresh private one)\n")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "new")
    res = run(*FAST, "--logs", str(link), **stub_gpu)
    assert res.returncode == 2 and res.stderr.startswith(f"gpu_check: logs folder {link} is a symbolic link:")
    assert victim.read_text() == "keep"


def test_a_link_planted_after_the_check_is_not_written_through(stub_gpu, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(*FAST, "--logs", str(empty), PLANT=str(empty), VICTIM=str(victim), **stub_gpu)
    assert res.returncode == 2
    assert res.stderr == (f"gpu_check: {empty}/cuda.log appeared in the logs folder (a link?): not written through; "
                          "run again\n")
    assert victim.read_text() == "keep" and sorted(p.name for p in empty.iterdir()) == ["cuda.log"]


def test_the_scale_steps_work_folder_is_inside_the_logs_folder(tmp_path):
    res = run("--dry-run", "--logs", str(tmp_path / "my logs"))
    assert res.returncode == 0 and f"logs {tmp_path}/my logs" in res.stdout
    scale = next(ln for ln in res.stdout.splitlines() if ln.startswith("step scale "))
    assert scale.endswith(f"--work {tmp_path}/my\\ logs/scale-work")  # quoted for bash -c
