"""How far the CUDA code path's arithmetic moves the golden numbers, measured on a CPU (by hand).

On CUDA the coreset runs as dense float32 passes (``greedy_coreset_dense``, float32 sums of
squared differences) instead of the CPU kernel's float64 sums, and the kNN as faiss's GPU index
or the torch GEMM backend instead of faiss's CPU index.  Both are plain torch / numpy code that
runs on any device, so this script runs the embedded study with exactly those two code paths on
the CPU, then holds the result against the goldens with the gates' own comparison
(``ad-repro compare``).  What it cannot reproduce: cuDNN's convolution kernels (the backbone's
features differ by float32 rounding on a GPU) -- the machine-to-machine drift in the goldens'
``drift.json`` already covers a feature-level change of that size.

Run: ``.venv/bin/python benchmarks/gpu_arithmetic_drift.py --out /tmp/gpu-path`` (the embedded set: the
dense coreset on ELPV's 461k-patch classes would take hours on a CPU)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ad_core.models.dn2 as dn2_module  # noqa: E402
import ad_core.models.patchcore as patchcore_module  # noqa: E402
from ad_core.models.kernels.coreset import greedy_coreset_dense  # noqa: E402
from ad_core.models.kernels.knn import NearestNeighbours  # noqa: E402
from experiments.definition.config import RunConfig  # noqa: E402
from experiments.gates.compare import compare_folders, format_rows  # noqa: E402
from experiments.study import run_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    def dense(features, size, start, progress=False, timeline=None):  # the CUDA branch of greedy_coreset
        return greedy_coreset_dense(features.float(), size, start, progress, timeline=timeline)

    patchcore_module.greedy_coreset = dense
    torch_knn = functools.partial(NearestNeighbours, backend="torch")  # the kNN a CUDA box without faiss-gpu runs
    patchcore_module.NearestNeighbours = torch_knn
    dn2_module.NearestNeighbours = torch_knn
    run_study(RunConfig(out=args.out, progress=False))

    golden = ROOT / "golden" / "embedded-efficientnet_lite0"
    rows = compare_folders(golden, args.out)
    beyond = [r for r in rows if not r["holds"]]
    moved = [r for r in rows if isinstance(r["diff"], float)]
    largest = {}
    for r in moved:
        largest[r["number"]] = max(largest.get(r["number"], 0.0), abs(r["diff"]))
    print("\n".join(format_rows(rows)))
    print(json.dumps({"numbers_that_moved": len(moved), "beyond_tolerance": len(beyond),
                      "largest_abs_difference": dict(sorted(largest.items()))}, indent=1))


if __name__ == "__main__":
    main()
