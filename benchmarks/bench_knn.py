"""Exact k-NN (k=9) of PatchCore's scoring: the bfloat16-filtered search, faiss's flat index and the torch
GEMM + topk backend, against the float32 GEMM alone (the floor of a float32 brute-force search), one
process, same points.

Bank and queries are PatchCore patches of the ELPV cells when a finished ELPV run is given
(``--out outputs-elpv``: the poly clean model's bank, test patches of that class), else
synthetic post-ReLU-like points of the same shape (23,049 x 152 bank, 50,000 queries).

Run: ``.venv/bin/python benchmarks/bench_knn.py [--out outputs-elpv] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ad_core.models.kernels.knn import NearestNeighbours  # noqa: E402


def points(out: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    if out is None:
        rng = np.random.default_rng(0)
        base = rng.gamma(2.0, 1.0, size=152).astype(np.float32)
        return ((base + 0.5 * rng.normal(size=(23049, 152))).astype(np.float32),
                (base + 0.5 * rng.normal(size=(50000, 152))).astype(np.float32), "synthetic")
    from ad_core.models.patchcore import PatchCore
    from experiments.definition.config import RunConfig
    from experiments.execution.runner import StudyRun

    logging.disable(logging.WARNING)
    run = StudyRun.of(RunConfig(out=out, dataset="elpv", progress=False, scenarios=["clean"]))
    model = PatchCore.load(out / "models" / "patchcore_elpv_poly_clean.npy")
    test = run.samples("elpv_poly", "clean", "test")[:64]
    q = torch.cat([model.embed_patches(b)[0] for b in run.store.batches(test)]).numpy()
    return model.memory_bank_, q, "ELPV poly (clean model's bank, 64 test cells' patches)"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="a finished ELPV run (real patches); default synthetic")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bank, q, what = points(args.out)
    knn = {b: NearestNeighbours(bank, backend=b) for b in ("exact", "faiss", "torch")}
    knn["exact"].search(q[:256], 9)  # compiles (or loads) the numba kernel outside the timing
    bt, qt = torch.from_numpy(bank).T.contiguous(), torch.from_numpy(q)

    def gemm_only() -> None:
        for lo in range(0, len(qt), 1024):
            qt[lo:lo + 1024] @ bt

    floor = best(gemm_only, args.repeat)
    rows = {b: best(lambda b=b: knn[b].search(q, 9), args.repeat) for b in knn}
    d_f, i_f = knn["faiss"].search(q, 9)
    d_t, i_t = knn["torch"].search(q, 9)
    d_b, i_b = knn["exact"].search(q, 9)
    print(f"{what}: bank {bank.shape}, {len(q)} queries, k=9, {torch.get_num_threads()} threads, best of {args.repeat}")
    print(f"GEMM alone (floor): {floor:.2f} s")
    for b, sec in rows.items():
        print(f"{b:>8}: {sec:.2f} s = {sec / floor:.2f}x the floor, {sec / rows['faiss']:.2f}x faiss")
    for b, (d, i) in {"torch": (d_t, i_t), "exact": (d_b, i_b)}.items():
        print(f"{b} vs faiss: same 9 neighbours in {(i == i_f).all(axis=1).mean():.5f} of the queries; "
              f"largest distance difference {float(np.max(np.abs(d - d_f))):.2e} "
              f"(faiss's float32 expansion; bfloat16's are float64 sums)")


if __name__ == "__main__":
    main()
