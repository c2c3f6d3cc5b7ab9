"""``ad-repro``: the command line of the suite."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ad_core.errors import DatasetError, SettingError, ThresholdError, WeightsError
from experiments.definition.config import ConfigError
from experiments.readers import FileFormatError, one_line

if TYPE_CHECKING:
    from experiments.definition.config import RunConfig

# Heavy modules (torch, faiss, numba, matplotlib, scikit-image) are imported inside the
# commands, so ``ad-repro --help`` answers without loading them (tests/test_startup.py).


PREPARE_SETTINGS = ("data", "layout", "categories", "out", "seed")  # what ``prepare`` reads of a run's settings


def _cmd_prepare(args: argparse.Namespace) -> int:
    from experiments.definition.config import RunConfig, check_environment, check_out, get_setting
    from experiments.definition.datasets import DOMAINS
    from experiments.execution.plan import data_root_of, resolve_layout
    from experiments.execution.prepare import prepare_categories, write_data_root

    given = {name: get_setting(name).given(args) for name in PREPARE_SETTINGS}
    settings = RunConfig().with_settings({k: (Path(v) if k == "out" else v) for k, v in given.items()
                                          if v is not None})
    check_environment()
    check_out(settings.out)  # nothing created; a link inside refused, none followed from now on
    for name in PREPARE_SETTINGS:
        get_setting(name).check(settings.get(name))
    if settings.data is not None and not Path(settings.data).expanduser().is_dir():
        raise ConfigError(f"--data {settings.data!r}: is not a folder (an MVTec-layout dataset root)")
    out, data = Path(settings.out), settings.data
    root, dataset = data_root_of(data, out)
    root = write_data_root(root, dataset, data is None)
    layout, categories = resolve_layout(data, root, dataset, settings.layout, settings.categories)
    print(f"dataset {dataset} at {root}; outputs in {out}")
    domains = tuple(d.name for d in DOMAINS.values() if d.derived)
    header = (f"{'category':<12}{'train':>7}{'val_n':>7}{'val_a':>7}{'test_n':>8}{'test_a':>8}  "
              + "  ".join(f"{d} copy" for d in domains))
    rows = []
    for category, prepared in prepare_categories(root, list(categories), out, settings.seed, domains=domains,
                                                 layout=layout.name).items():
        c = prepared.splits.counts()
        rows.append(
            f"{category:<12}{c['train']:>7}{c['val_normal']:>7}{c['val_anomalous']:>7}"
            f"{c['test_normal']:>8}{c['test_anomalous']:>8}  "
            + "  ".join(str(prepared.files(d).path) for d in domains)
        )
    print(header)
    print("\n".join(rows))
    print(f"splits in {out / 'splits'}; each copy's parameters in <copy>/shift_params.json")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from experiments.definition.config import RunConfig, all_settings
    from experiments.definition.presets import preset_settings
    from experiments.evaluation.statistics import claim_line
    from experiments.reporting.report import summary_table
    from experiments.study import run_seeds, run_study

    explicit = {d.name: d.given(args) for d in all_settings() if d.decl.option}
    if explicit.get("out") is not None:
        explicit["out"] = Path(explicit["out"])
    if args.config:  # a recorded run's study settings; every option given here over them
        config = config_from_file(Path(args.config), args, explicit)
    else:
        config = RunConfig().with_settings(preset_settings(args.preset or "study", explicit))
    if args.seeds:  # (run_study validates the configuration, run_seeds the seeds, before any data is read)
        summary, per_seed = run_seeds(config, args.seeds)
        for c in summary["claims"]:
            print(f"{c['claim']}: mean {c['mean_difference']:+.3f} (sd {c['sd_difference']:.3f}), "
                  f"holds in {c['holds_in']}/{c['n_seeds']} seeds")
        total = sum(t["total"] for t in per_seed.values())
        print(f"\n{len(args.seeds)} seeds in {total:.1f} s; per seed: {config.out}/seed-<n>/; "
              f"spread over seeds: {config.out}/aggregate.json, {config.out}/report.md")
        return 0
    results, timings = run_study(config)
    ran = [r for r in results if r.scenario in timings]
    print("\n".join(summary_table(ran)))
    print(f"\n{len(ran)} scenario(s) in {timings['total']:.1f} s "
          f"({timings['features_computed']} images through the backbone); "
          f"artifacts in {config.out}: results/, thresholds/, models/, scores/, visualizations/, report.md")
    claims = json.loads((config.out / "claims.json").read_text())
    if claims:
        print("\n" + "\n".join(claim_line(c) for c in claims))
    verdict_path = config.out / "verdict.json"
    if verdict_path.is_file():
        verdict = json.loads(verdict_path.read_text())
        print(f"\nReproduction verdict ({verdict['preset']}): {verdict['status']}. {verdict['summary']}\n"
              f"(per category and metric: {verdict_path}, report.md)")
        if "unified" in verdict:
            print(f"Multi-class (unified) verdict: {verdict['unified']['status']}. {verdict['unified']['summary']}")
    return 0


def config_path(path: Path) -> Path:
    """The config.json of ``--config PATH``: a run's --out folder, a golden folder, or the file (a
    ``run_config.json`` stands for the ``config.json`` beside it)."""
    from experiments.records.provenance import CONFIG_FILE

    if path.is_dir():
        return path / CONFIG_FILE
    return path.with_name(CONFIG_FILE) if path.name == "run_config.json" else path


def load_config_file(path: Path) -> tuple[dict[str, object], dict[str, object]]:
    """(study settings, not-followed settings) of a recorded configuration, each value checked.

    The study settings are what a file may set; the others (``machine_settings()``, and a weights *file*)
    are returned apart so that the caller refuses or ignores them, never follows them."""
    from experiments.definition.config import WEIGHT_NAMES, RunConfig, machine_settings, read_config, validate
    from experiments.readers import FileFormatError

    path = config_path(path)
    try:
        recorded = read_config(path)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file (a run's --out folder holds {path.name})") from None
    except FileFormatError as exc:
        raise ConfigError(f"--config {exc}") from None
    machine_names = machine_settings()
    study = {k: v for k, v in recorded.items() if k not in machine_names}
    machine = {k: v for k, v in recorded.items() if k in machine_names}
    if study.get("weights") is not None and study["weights"] not in WEIGHT_NAMES:
        machine["weights"] = study.pop("weights")
    try:  # the recorded values alone, before any option joins them: an error names the file
        validate(RunConfig(**study), touch_out=False, load_weights=False)
    except ConfigError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    return study, machine


def config_from_file(path: Path, args: argparse.Namespace, explicit: dict) -> RunConfig:
    """The run of ``--config PATH``: its study settings, the command line's options over them; where the
    run executes and what it reads and writes from the command line only (docs/security.md)."""
    from experiments.definition.config import RunConfig

    study, machine = load_config_file(path)
    where = config_path(path)
    if machine.get("data") is not None and args.data is None:
        raise ConfigError(f"--config {where}: the recorded run read a --data folder of its machine, which is not "
                          "followed; give --data <that dataset's folder here>")
    if "weights" in machine and args.weights is None:
        raise ConfigError(f"--config {where}: the recorded run used the weights file "
                          f"{Path(str(machine['weights'])).name!r}, which is not followed; give --weights FILE")
    defaults = RunConfig()
    ignored = [f"{k} {v!r}" for k, v in machine.items()
               if k not in ("data", "weights", "out") and v != getattr(defaults, k)]
    if ignored:
        logging.getLogger("ad-repro").warning(
            "--config %s: not followed: %s (where a run executes and what it writes come from the command line: "
            "--device, --executor, --scheduler, --workers, --threads, --official-maps)", where, ", ".join(ignored))
    recorded = RunConfig.from_json({**study, **({"preset": args.preset} if args.preset else {})},
                                   f"--config {where}")
    return recorded.with_settings({k: v for k, v in explicit.items() if v is not None})


def _cmd_compare(args: argparse.Namespace) -> int:
    from experiments.gates.compare import CompareError, compare_folders, format_rows, summarise
    from experiments.records import provenance

    records, unusable = {}, []
    for side in (args.a, args.b):
        if not (Path(side) / "results").is_dir():
            continue  # a golden folder: no provenance (its numbers are the record)
        try:
            records[side] = provenance.read(Path(side))
        except FileNotFoundError:
            unusable.append(f"{side} has no {provenance.PROVENANCE_FILE}")
        except FileFormatError as exc:
            unusable.append(str(exc))
    if unusable and not args.different_data:
        print(f"ad-repro compare: {'; '.join(unusable)}: nothing shows the two runs read the same data; pass "
              "--different-data to compare them anyway", file=sys.stderr)
        return 2
    if len(records) == 2:
        pa, pb = records[args.a], records[args.b]
        differ = provenance.differences(pa, pb)
        print("provenance: " + ("the same" if not differ else f"{len(differ)} difference(s)"))
        for line in differ:
            print(f"  {line}")
        if pa.get("data_digest") != pb.get("data_digest") and not args.different_data:
            print(f"ad-repro compare: {args.a} and {args.b} were run on different data (digest "
                  f"{str(pa.get('data_digest'))[:12]} vs {str(pb.get('data_digest'))[:12]}); pass --different-data "
                  "to compare them anyway", file=sys.stderr)
            return 2
    try:
        rows = compare_folders(Path(args.a), Path(args.b), args.tolerance, every=True, shared=args.shared)
    except CompareError as exc:
        print(f"ad-repro compare: {one_line(str(exc))}", file=sys.stderr)
        return 2
    table = format_rows(rows, only_failing=not args.all)
    if len(table) > 2:  # header + separator, then the rows beyond tolerance (every row that differs: --all)
        print("\n".join(table))
    print("\n" + summarise(rows))
    return 1 if any(not r["holds"] for r in rows) else 0


def _cmd_golden_record(args: argparse.Namespace) -> int:
    from experiments.definition.config import check_out
    from experiments.gates.goldens import record

    check_out(Path(args.dest), "dest")  # a link inside the golden folder refused, none followed
    try:
        written = record(Path(args.run), Path(args.dest))
    except ValueError as exc:  # FileFormatError included: a damaged or foreign file of the run, named
        print(f"ad-repro golden record: {one_line(str(exc))}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} golden file(s), {size / 1024:.0f} kB, in {args.dest}: "
          + ", ".join(p.name for p in written))
    print(f"gate a later run with: ad-repro compare {args.dest} <its --out>  (exit 0 holds, 1 moved, 2 unusable)")
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
    from experiments.definition.config import all_settings, get_setting

    for name in PREPARE_SETTINGS:
        get_setting(name).add_option(prep)
    prep.set_defaults(func=_cmd_prepare)

    from experiments.definition.methods import METHODS
    from experiments.definition.presets import PRESETS

    run = sub.add_parser(
        "run", help="run scenarios end to end: models, thresholds, metrics, figures, report",
        description="Run the study's scenarios. With no --data, on the embedded default dataset "
                    "with the offline EfficientNet-Lite0 backbone; with --data, ResNet-50 by default. "
                    "Presets: " + "; ".join(f"{n}: {p.description}" for n, p in PRESETS.items())
                    + ". Methods: " + "; ".join(f"{n}: {m.description}" for n, m in METHODS.items()),
    )
    run.add_argument("--config", metavar="PATH",
                     help="re-run a recorded run: its --out folder (or its config.json / run_config.json); every "
                          "option given here overrides the recorded one (e.g. --out <new>)")
    run.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                     help="run the study once per seed into <out>/seed-<n>/ (features shared) and write the "
                          "spread over seeds (aggregate.json, report.md); e.g. --seeds 42 43 44 45 46")
    for d in all_settings():
        if d.decl.option:
            d.add_option(run)
    run.set_defaults(func=_cmd_run)

    cmp_ = sub.add_parser(
        "compare", help="hold a run folder against another run or a golden folder (exit 0 same, 1 moved, 2 unusable)",
        description="Compare every number the report states, with the golden tolerances (a golden side's own, "
                    "else derived from A's set sizes), or one --tolerance for every number.")
    cmp_.add_argument("a", help="a run's --out folder (the reference side)")
    cmp_.add_argument("b", help="another run's --out folder, or a golden/<dataset>-<backbone> folder")
    cmp_.add_argument("--tolerance", type=float, help="one absolute tolerance for every number instead")
    cmp_.add_argument("--different-data", action="store_true",
                      help="compare runs whose provenance says they read different data content")
    cmp_.add_argument("--shared", action="store_true",
                      help="compare the scenarios both folders hold (default: both must hold the same ones)")
    cmp_.add_argument("--all", action="store_true",
                      help="table every number that differs (default: only those beyond tolerance)")
    cmp_.set_defaults(func=_cmd_compare)

    golden = sub.add_parser("golden", help="goldens of your own runs, to gate them in CI")
    golden_sub = golden.add_subparsers(dest="golden_command", required=True)
    rec = golden_sub.add_parser(
        "record", help="write a results-only golden of a run (tens of kB): DEST/<scenario>.json with derived "
                       "tolerances and their reasons; gate later runs with: ad-repro compare DEST NEW_RUN")
    rec.add_argument("run", help="a run's --out folder")
    rec.add_argument("dest", help="the golden folder to write (e.g. golden/my-line-3)")
    rec.set_defaults(func=_cmd_golden_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("ad-repro").setLevel(logging.INFO)  # the run's notes (the data's layout) and its warnings
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, WeightsError, FileFormatError, ThresholdError, SettingError) as exc:
        print(f"ad-repro: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only or vanished folder: what is written stays intact
        where = f"{exc.filename}: " if exc.filename else ""
        print(one_line(f"ad-repro: error: {where}{exc.strerror or exc}; {os_fix(exc)}, then run the same command "
                       "again: it resumes from what was written"), file=sys.stderr)
        return 2


def os_fix(exc: OSError) -> str:
    """What to do about an OSError of a write or a read, by its errno."""
    import errno

    return {errno.ENOSPC: "the disk is full: free space", errno.EDQUOT: "the disk quota is spent: free space",
            errno.EISDIR: "a folder stands where the suite writes this file: move or delete that folder",
            errno.ENOTDIR: "a file stands where the suite needs a folder: move or delete that file",
            errno.EACCES: "fix the permissions (or choose another --out)",
            errno.EPERM: "fix the permissions (or choose another --out)",
            errno.EROFS: "the file system is read-only: choose another --out"}.get(
        exc.errno, "check the disk and the path")


if __name__ == "__main__":
    sys.exit(main())
