"""``ad-repro``: the command line of the suite."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ad_core import SEED
from ad_core.errors import DatasetError
from experiments.prepare import default_categories, prepare_category, resolve_data_root


def _cmd_prepare(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root, dataset = resolve_data_root(args.data, out)
    categories = args.categories or default_categories(root, dataset)
    print(f"dataset {dataset} at {root}; outputs in {out}")
    header = f"{'category':<12}{'train':>7}{'val_n':>7}{'val_a':>7}{'test_n':>8}{'test_a':>8}  shifted copy"
    rows = []
    for category in categories:
        prepared = prepare_category(root, category, out, args.seed)
        c = prepared.splits.counts()
        rows.append(
            f"{category:<12}{c['train']:>7}{c['val_normal']:>7}{c['val_anomalous']:>7}"
            f"{c['test_normal']:>8}{c['test_anomalous']:>8}  {prepared.shifted.path}"
        )
    print(header)
    print("\n".join(rows))
    print(f"splits in {out / 'splits'}; shift parameters in <shifted copy>/shift_params.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ad-repro",
        description="Reproduce and regress the PatchCore / PaDiM study on MVTec-layout data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser(
        "prepare",
        help="build the dataset (embedded default if no --data), its splits and its MVTec-Shift copy",
    )
    prep.add_argument("--data", help="root of an MVTec-layout dataset (default: the embedded dataset)")
    prep.add_argument("--categories", nargs="+", help="categories to prepare (default: all found)")
    prep.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    prep.add_argument("--seed", type=int, default=SEED, help=f"split and shift seed (default: {SEED})")
    prep.set_defaults(func=_cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DatasetError as exc:
        print(f"ad-repro: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
