"""Provenance of a run (``<out>/provenance.json``): what produced its numbers, and how to compare two runs'.

Recorded per run: the package version, the git commit and whether the tree was dirty (with a digest
of the diff), Python and library versions, the CPU model and the instruction sets the kernels used,
the GPU and its CUDA version when one was used, threads, executor, the kNN backend actually used, the
data root, its layout and the rule by which its reader held test normals out (where it did: VisA
without its split file), one digest of the dataset's file names and contents, and the command line.
``ad-repro compare`` prints the differences first and refuses runs on different data content.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ad_core.data.bit_depth import RULE as BIT_DEPTH_RULE
from experiments.execution.fingerprint import PACKAGE_ROOT, library_version
from experiments.readers.run_folder import PROVENANCE_FORMAT, CpuInfo, GitState, GpuInfo, ProvenanceFile

PROVENANCE_FILE = "provenance.json"
CONFIG_FILE = "config.json"  # the full RunConfig: ``ad-repro run --config <out>`` re-runs it
LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image", "faiss", "numba", "timm",
             "pillow")
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "bf16", "asimd")


def git_state(root: Path = PACKAGE_ROOT) -> GitState | None:
    """{commit, dirty, diff_sha256} of the checkout the code runs from, or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                              check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD", "--binary")
        untracked = git("ls-files", "--others", "--exclude-standard")
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = bool(diff or untracked)
    return GitState(commit=commit, dirty=dirty,
                    diff_sha256=hashlib.sha256((diff + untracked).encode()).hexdigest() if dirty else None)


def data_digest(names_and_digests: list[tuple[str, str]]) -> str:
    """One SHA-256 over the dataset's (category/relpath, file SHA-256) pairs, in sorted order."""
    h = hashlib.sha256()
    for name, d in sorted(names_and_digests):
        h.update(f"{name}\0{d}\n".encode())
    return h.hexdigest()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(run: object, threads: int | None, executor: str, workers: int) -> dict[str, object]:
    """The provenance record of a ``StudyRun`` (``experiments.execution.runner``) after its scenarios ran, built as
    the ``ProvenanceFile`` that reads it."""
    import torch

    from ad_core.models.kernels.products import bf16_native, cpu_flags
    from experiments.execution.cache import inputs_of

    try:
        version = metadata.version("ad-repro")
    except metadata.PackageNotFoundError:
        version = "not installed"
    files = [(name, d) for p in run.prepared.values() for name, d in inputs_of(p.clean.all_samples())]
    gpu = None
    if str(run.device).startswith("cuda"):
        gpu = GpuInfo(name=torch.cuda.get_device_name(torch.device(run.device)), cuda=torch.version.cuda)
    # how the bit depth of 16-bit-container images is decided, and the images read otherwise, with why
    # (ad_core.data.bit_depth): written where a category has such images
    deep = any(p.clean.bit_depth for p in run.prepared.values())
    record = ProvenanceFile(
        format=PROVENANCE_FORMAT,
        ad_repro=version,
        git=git_state(),
        python=sys.version.split()[0],
        libraries={name: library_version(name) for name in LIBRARIES},
        cpu=CpuInfo(model=cpu_model(), machine=platform.machine(), cores=len(os.sched_getaffinity(0)),
                    flags=sorted(f for f in KERNEL_FLAGS if f in cpu_flags()), bfloat16_products=bf16_native()),
        gpu=gpu,
        device=run.device,
        threads=threads or torch.get_num_threads(),
        executor=executor if executor == "local" else f"{executor} ({workers} workers)",
        knn_backend=run.knn_backend,
        data_root=str(run.root),
        layout=run.layout,
        # the reader's hold-out rule of each category it applied to (the splits file's ``holdout``)
        split_holdout={c: p.splits.holdout for c, p in run.prepared.items() if p.splits.holdout} or None,
        data_digest=data_digest(files),
        data_files=len(files),
        # per category: the bit depth its 16-bit-container images are read at (None: 8-bit images only)
        image_bit_depth={c: p.clean.bit_depth for c, p in run.prepared.items()},
        image_bit_depth_rule=BIT_DEPTH_RULE if deep else None,
        image_bit_depth_exceptions={c: p.clean.bit_depth_exceptions for c, p in run.prepared.items()
                                    if p.clean.bit_depth_exceptions} if deep else None,
        command=sys.argv,
    )
    return record.to_json()


def read(folder: Path) -> dict[str, object]:
    """A run folder's provenance, strictly (``experiments.readers.read_provenance``): FileNotFoundError
    without one, FileFormatError naming the file and the field when it is damaged or from another version."""
    from experiments.readers import read_provenance

    return read_provenance(Path(folder) / PROVENANCE_FILE)


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``key: A -> B`` for every provenance entry that differs (the command line and root left out)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ("command",):
            continue
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}: {x!r} -> {y!r}")
    return out
