"""Measure the drift of every golden number between faithful runs of the same study (by hand).

Run the study twice with the same seed and data under conditions a faithful rerun may
differ in (BLAS/torch/numba thread counts, which reorder float sums), then:

    python benchmarks/measure_drift.py RUN_A RUN_B --golden golden/embedded-efficientnet_lite0 \\
        --how "1 vs 2 threads, one machine" [--golden-ref REV --ref-how "recorded on another machine"]

writes ``<golden>/drift.json``: the largest |A - B| of each number (and relative for tau).
``--golden-ref REV`` also compares RUN_A with the golden files as they were at git revision
REV (numbers present in both: e.g. recorded by an earlier session on another machine of the
same kind), and keeps the larger drift.  ``pytest -m regression --regen-all`` then derives
every tolerance from it and the test sets' granularity (``experiments.gates.goldens``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from ad_core.data.io import write_json
from experiments.gates.goldens import DRIFT_FILE, max_drift, merge_drift
from experiments.readers import read_drift
from experiments.readers.golden import DriftFile
from experiments.records.artifacts import load_results


def golden_at(folder: Path, rev: str, scenarios: list[str], methods: list[str] | None) -> dict:
    out = {}
    for sc in scenarios:
        try:
            text = subprocess.check_output(["git", "show", f"{rev}:{folder.as_posix()}/{sc}.json"], text=True)
        except subprocess.CalledProcessError:
            continue
        found = json.loads(text)["methods"]
        out[sc] = {k: v for k, v in found.items() if not methods or k.split("@")[0] in methods}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path, nargs="?", help="the second run (omit to use only --golden-ref/--also)")
    parser.add_argument("--golden", type=Path, required=True, help="golden folder to write drift.json into")
    parser.add_argument("--how", required=True, help="what differed between the two runs")
    parser.add_argument("--golden-ref", help="git revision of earlier golden files to compare RUN_A with too")
    parser.add_argument("--ref-how", default="", help="what differed between RUN_A and those goldens")
    parser.add_argument("--ref-methods", nargs="+", help="only these methods of the earlier goldens (unchanged since)")
    parser.add_argument("--also", type=Path, help="another drift.json to merge in")
    args = parser.parse_args()
    a = load_results(args.run_a)
    records, hows = [], []
    if args.run_b:
        b = load_results(args.run_b)
        shared = sorted({r.scenario for r in a} & {r.scenario for r in b})
        records.append(max_drift([r for r in a if r.scenario in shared], [r for r in b if r.scenario in shared]))
        hows.append(f"{args.how} ({', '.join(shared)})")
    if args.also:
        other = read_drift(args.also)
        records.append(other)
        hows.append(other["how"])
    if args.golden_ref:
        ref = golden_at(args.golden, args.golden_ref, [r.scenario for r in a], args.ref_methods)
        records.append(max_drift(a, [], b_entries=ref))
        hows.append(f"against the goldens at {args.golden_ref[:10]}: {args.ref_how} ({', '.join(sorted(ref))})")
    record = DriftFile(how="; ".join(hows).strip(), **merge_drift(*records)).to_json()  # refused as read_drift would
    write_json(args.golden / DRIFT_FILE, record)
    print(json.dumps({k: v for k, v in record.items() if k != "by_scenario"}, indent=2))


if __name__ == "__main__":
    main()
