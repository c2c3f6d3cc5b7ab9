"""Shared fixtures: synthetic MVTec-layout folders, the real-data switch (MVTEC_ROOT), and the device
the end-to-end gates run on (header line; ``AD_REPRO_REQUIRE_CUDA=1`` refuses a CPU-only machine)."""

from __future__ import annotations

import os

# Before torch loads OpenMP: pytest -n 2 runs two processes of 2 threads each on 2 cores, and
# OpenMP's default spin-waiting threads then wait for each other (the CI suite took 16 min 19 s
# spinning, 10 min 28 s passive, same results: the wait policy changes no arithmetic).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from ad_core.data.io import write_image

# No property test is timed: hypothesis's 200 ms deadline failed one under a loaded machine (a benchmark
# running beside the suite); speed targets live in benchmarks/, never in unit tests.
settings.register_profile("ad-repro", deadline=None)
# `pytest -m faults --hypothesis-profile deep`: the fuzzing of handed-over files (tests/test_fuzz_inputs.py)
# at 1,000 examples each (CI runs 30-40), and every other property test at 1,000 too
settings.register_profile("deep", deadline=None, max_examples=1000)
settings.load_profile("ad-repro")


def write_category(
    root: Path,
    name: str = "widget",
    n_train: int = 5,
    n_test_good: int = 2,
    defects: dict[str, int] | None = None,
    size: tuple[int, int] = (32, 32),
    gray: bool = False,
    masks: bool = True,
    empty_files: bool = False,
) -> Path:
    """Write a small MVTec-layout category; ``empty_files`` only creates names (for split counts)."""
    defects = {"crack": 3, "dent": 2} if defects is None else defects
    cat = root / name
    rng = np.random.default_rng(0)

    def put(path: Path, arr: np.ndarray) -> None:
        if empty_files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            write_image(path, arr)

    shape = size if gray else (*size, 3)
    for i in range(n_train):
        put(cat / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    for i in range(n_test_good):
        put(cat / "test" / "good" / f"{i:03d}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    for defect, n in defects.items():
        for i in range(n):
            put(cat / "test" / defect / f"{i:03d}.png", rng.integers(0, 255, shape, dtype=np.uint8))
            if masks:
                m = np.zeros(size, dtype=bool)
                m[4:10, 5:12] = True
                put(cat / "ground_truth" / defect / f"{i:03d}_mask.png", m)
    return cat


def metrics_only(results: list) -> list[dict]:
    """Results (``ScenarioResult`` or their JSON) without wall-clock numbers (fit seconds), as JSON."""
    import json

    out = json.loads(json.dumps([r.to_json() if hasattr(r, "to_json") else r for r in results], sort_keys=True))
    for r in out:
        for m in r["methods"].values():
            for pc in m["per_class"].values():
                pc.pop("fit_seconds", None)
    return out


def run_numbers(out: Path) -> dict[str, object]:
    """Everything number-bearing a run wrote into ``out``: results (without the configuration and
    wall-clock seconds), thresholds and per-image scores (as text): equal iff the numbers are identical."""
    import json

    got: dict[str, object] = {}
    for path in sorted((out / "results").glob("*.json")):
        r = json.loads(path.read_text())
        r.pop("config", None)
        for m in r["methods"].values():
            for pc in m["per_class"].values():
                pc.pop("fit_seconds", None)
        got[f"results/{path.name}"] = r
    for sub in ("thresholds", "scores"):
        for path in sorted((out / sub).rglob("*")):
            if path.is_file():
                got[path.relative_to(out).as_posix()] = path.read_text()
    return got


def seal_results(out: Path) -> Path:
    """Rewrite ``out/checksums.json`` over its results files, as a run that wrote them records it: a test
    that plants numbers in a results file seals it so that the planted numbers, not the edit, are read."""
    import json

    from ad_core.data.io import bytes_sha256

    book = {f"results/{p.name}": bytes_sha256(p) for p in sorted((out / "results").glob("*.json")) if p.is_file()}
    (out / "checksums.json").write_text(json.dumps(book))
    return out


REQUIRE_CUDA = "AD_REPRO_REQUIRE_CUDA"


def gate_device() -> tuple[str, str]:
    """(device, kNN backend) the end-to-end gates use: the runner's 'auto', resolved by the same functions."""
    import torch

    from ad_core.features.extractor import resolve_device
    from ad_core.models.kernels.knn import resolve_backend

    device = resolve_device("auto")
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})", resolve_backend(device)
    return "cpu (no CUDA device visible)", resolve_backend(device)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(REQUIRE_CUDA, "") not in ("", "0", "1"):  # a setting, checked as an option is
        raise pytest.UsageError(f"{REQUIRE_CUDA}={os.environ[REQUIRE_CUDA]!r}: set it to 1 (fail without CUDA) or 0 "
                                "(or unset it)")
    if os.environ.get(REQUIRE_CUDA) == "1":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(
                f"{REQUIRE_CUDA}=1 but torch sees no CUDA device (torch {torch.__version__}, built with CUDA "
                f"{torch.version.cuda}): the gates would fall back to the CPU. Run on a GPU machine, install a "
                f"CUDA build of torch, or unset {REQUIRE_CUDA}.")


def pytest_report_header(config: pytest.Config) -> list[str]:
    device, knn = gate_device()
    required = " (required by AD_REPRO_REQUIRE_CUDA=1)" if os.environ.get(REQUIRE_CUDA) == "1" else ""
    return [f"ad-repro gates: device {device}{required}; kNN backend {knn}"]


@pytest.fixture
def make_category(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_category(name=..., ...)`` writes under a fresh tmp root; returns the category dir."""
    def factory(**kwargs: object) -> Path:
        return write_category(tmp_path / "data", **kwargs)  # type: ignore[arg-type]
    return factory


@pytest.fixture(scope="session")
def mvtec_root() -> Path:
    """Real MVTec AD from $MVTEC_ROOT; the test is skipped (with the reason) when unset."""
    value = os.environ.get("MVTEC_ROOT")
    if not value:
        pytest.skip("MVTEC_ROOT is not set: real MVTec AD is not available on this machine")
    root = Path(value)
    if not root.is_dir():
        pytest.fail(f"MVTEC_ROOT={value} is not a folder")
    return root


