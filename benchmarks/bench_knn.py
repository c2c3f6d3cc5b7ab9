"""Exact k-NN (k=9) of PatchCore's scoring: faiss's flat index vs the torch GEMM + topk backend, against
the GEMM alone (the floor of any exact brute-force search), one process, same points.

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

from ad_core.models.knn import NearestNeighbours  # noqa: E402


def points(out: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    if out is None:
        rng = np.random.default_rng(0)
        base = rng.gamma(2.0, 1.0, size=152).astype(np.float32)
        return ((base + 0.5 * rng.normal(size=(23049, 152))).astype(np.float32),
                (base + 0.5 * rng.normal(size=(50000, 152))).astype(np.float32), "synthetic")
    from ad_core.models.patchcore import PatchCore
    from experiments.runner import RunConfig, StudyRun

    logging.disable(logging.WARNING)
    run = StudyRun(RunConfig(out=out, dataset="elpv", progress=False, scenarios=["clean"]))
    model = PatchCore.load(out / "models" / "patchcore_elpv_poly_clean.npy")
    test = run.samples("elpv_poly", "clean", "test")[:64]
    q = torch.cat([model._patches(b)[0] for b in run.store.batches(test)]).numpy()
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
    knn = {b: NearestNeighbours(bank, backend=b) for b in ("faiss", "torch")}
    bt, qt = torch.from_numpy(bank).T.contiguous(), torch.from_numpy(q)

    def gemm_only() -> None:
        for lo in range(0, len(qt), 1024):
            qt[lo:lo + 1024] @ bt

    floor = best(gemm_only, args.repeat)
    rows = {b: best(lambda b=b: knn[b].search(q, 9), args.repeat) for b in knn}
    d_f, i_f = knn["faiss"].search(q, 9)
    d_t, i_t = knn["torch"].search(q, 9)
    print(f"{what}: bank {bank.shape}, {len(q)} queries, k=9, {torch.get_num_threads()} threads, best of {args.repeat}")
    print(f"GEMM alone (floor): {floor:.2f} s")
    for b, sec in rows.items():
        print(f"{b:>6}: {sec:.2f} s = {sec / floor:.2f}x the floor, {sec / rows['faiss']:.2f}x faiss")
    print(f"same first neighbour: {(i_f[:, 0] == i_t[:, 0]).mean():.5f}; "
          f"largest relative distance difference: {float(np.max(np.abs(d_t - d_f) / np.maximum(d_f, 1e-12))):.2e}")


if __name__ == "__main__":
    main()
