"""Cost curve of the unified scenario from 1 to 15 MVTec AD-sized categories (issue 21).

A synthetic MVTec-layout dataset with MVTec AD's per-category image counts
(``experiments/published/mvtec_ad_counts.json``; ``ad_core.data.synthetic``) is run through the
real runner -- ``ad-repro run --scenarios unified --backbone resnet50 --weights random
--no-bootstrap`` on the first n categories (``clean`` for one: the same fits and scores, as one
class's unified model is its own) -- each size in a fresh process, so its peak RSS is its own.
Per size it records the runner's exclusive phase seconds (``timings.json``), the peak RSS (the
process and its children), the memory-bank size, and fits each phase's growth exponent:
seconds ~ patches^b over the sizes (least squares in log-log).  The synthetic set's accuracy
numbers are not the point; its sizes, hence the costs, are MVTec AD's.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 1 3 8 15] [--work /tmp/scale]
[--readme benchmarks/README.md]`` (``--readme`` replaces the section between
``<!-- scale:begin -->`` and ``<!-- scale:end -->``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ad_core.data.io import bytes_sha256
from ad_core.data.layouts.mvtec import discover_category
from experiments.execution.fingerprint import describe_change, fingerprint

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # bench_models, when run as a script
COUNTS = REPO / "experiments" / "published" / "mvtec_ad_counts.json"

# report columns: (title, phases summed); every other phase goes to "rest"
BACKBONE_PASS = ("image decode + preprocessing", "backbone", "feature cache write")
COLUMNS = (
    ("backbone pass", BACKBONE_PASS),
    ("feature reads", ("feature cache read",)),
    ("PatchCore embed/project/gather", ("patchcore fit: embed, project, gather",)),
    ("coreset", ("coreset",)),
    ("PatchCore kNN + reweight", ("knn search", "patchcore score: embed, reweight")),
    ("PaDiM fit", ("padim fit",)),
    ("PaDiM score", ("padim score",)),
    ("DN2", ("dn2 fit + score",)),
    ("maps", ("maps: upsample + blur", "score cache I/O", "masks")),
    ("metrics", ("image metrics", "pixel metrics: pixel AUROC, PRO", "shortcut analysis")),
)


def mvtec_counts() -> dict[str, dict[str, int]]:
    return json.loads(COUNTS.read_text())["counts"]


def peak_rss_gib() -> float:
    """The larger of this process's and its waited-for children's peak resident set (Linux: kB)."""
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kb / 2**20


class PhasePeaks(threading.Thread):
    """Samples this process's resident set every ``every`` s; keeps the largest seen in each running phase."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every, self.peaks, self._done = every, {}, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def run(self) -> None:
        from ad_core import timing

        while not self._done.wait(self.every):
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * self._page / 2**30
            name = timing.current() or "outside phases"
            self.peaks[name] = max(rss, self.peaks.get(name, 0.0))

    def stop(self) -> dict[str, float]:
        """{phase: peak GiB}, largest first."""
        self._done.set()
        self.join()
        return dict(sorted(self.peaks.items(), key=lambda kv: -kv[1]))


def run_one(data: Path, categories: list[str], out: Path, backbone: str = "resnet50", image_size: int = 224,
            batch_size: int = 16, feature_memory_gb: float = 1.0, device: str = "auto") -> dict[str, object]:
    """Run the unified scenario on ``categories`` into ``out`` (in this process); return its measurement."""
    from experiments.definition.config import RunConfig
    from experiments.study import run_study

    # one category: the unified scenario is undefined (the runner skips it); its model is the class's own
    scenario, scope = ("unified", "unified") if len(categories) > 1 else ("clean", categories[0])
    config = RunConfig(data=str(data), categories=categories, scenarios=[scenario], backbone=backbone,
                       weights="random", out=out, bootstrap=False, progress=False, image_size=image_size,
                       batch_size=batch_size, feature_memory_gb=feature_memory_gb, device=device)
    sampler = PhasePeaks()
    sampler.start()
    t0 = time.perf_counter()
    _, timings = run_study(config)
    wall = time.perf_counter() - t0
    peaks = sampler.stop()
    fit = json.loads((out / "models" / f"patchcore_{scope}_clean.fit.json").read_text())
    row = {"categories": len(categories), "train_images": fit["n_train_images"],
           "train_patches": fit["n_train_patches"], "memory_bank": fit["memory_bank_size"],
           "wall_s": wall, "peak_rss_gib": peak_rss_gib(), "phases": timings["phases"],
           "device": json.loads((out / "provenance.json").read_text())["device"],
           "peak_rss_by_phase": {k: round(v, 3) for k, v in list(peaks.items())[:4]}}
    (out / "scale_measurement.json").write_text(json.dumps(row, indent=1))
    return row


def code_state(settings: dict[str, object]) -> dict[str, object]:
    """What a measurement depends on: every source file of ``ad_core``, ``experiments`` and this script
    (SHA-256), the libraries' versions and the benchmark's settings."""
    files = sorted([*REPO.glob("ad_core/**/*.py"), *REPO.glob("experiments/**/*.py"), Path(__file__).resolve()])
    code = {f.relative_to(REPO).as_posix(): bytes_sha256(f)[:16] for f in files}
    return {"code": code, "libraries": fingerprint("models")["libraries"], "settings": settings}


def stale(recorded: dict | None, state: dict) -> str | None:
    """Why a finished measurement cannot be reused (None: it can): other code, libraries or settings."""
    if recorded == state:
        return None
    if recorded and recorded.get("settings") != state["settings"]:
        return f"settings {recorded.get('settings')} -> {state['settings']}"
    return describe_change(recorded, state)


def measure(data: Path, categories: list[str], out: Path, feature_memory_gb: float,
            keep_features: bool = False, device: str = "auto") -> dict[str, object]:
    """``run_one`` in a fresh Python process (its own peak RSS).  A finished measurement is reused only
    when the code, libraries and settings that made it are today's (``code_state``); otherwise the
    size is measured again, saying why.  The size's feature cache (5.6 MB an image) is deleted after
    it unless ``keep_features``."""
    done = out / "scale_measurement.json"
    state = code_state({"feature_memory_gb": feature_memory_gb, "device": device})
    if done.is_file():
        recorded = json.loads(done.read_text())
        why = stale(recorded.get("state"), state)
        if why is None:
            return recorded
        print(f"{out}: measured by other code or settings ({why}): measuring again", flush=True)
        shutil.rmtree(out)
    cmd = [sys.executable, __file__, "--feature-memory-gb", str(feature_memory_gb), "--device", device,
           "--child", str(data), str(out), *categories]
    subprocess.run(cmd, check=True, cwd=REPO)
    if not keep_features:
        shutil.rmtree(out / "cache" / "features", ignore_errors=True)
    row = {**json.loads(done.read_text()), "state": state}
    done.write_text(json.dumps(row, indent=1))
    return row


def columns(row: dict) -> dict[str, float]:
    """Seconds per report column (and "rest": every phase not named, incl. orchestration)."""
    phases = dict(row["phases"])
    out = {title: sum(phases.pop(p, 0.0) for p in names) for title, names in COLUMNS}
    out["rest"] = sum(phases.values())
    out["total excl. backbone"] = sum(v for k, v in out.items() if k != "backbone pass")
    return out


def growth_exponent(x: list[float], seconds: list[float]) -> float | None:
    """b of seconds ~ a x^b, least squares on log-log over the points with seconds >= 0.05 (None: < 2)."""
    pts = [(xi, s) for xi, s in zip(x, seconds) if s >= 0.05]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    lx, ls = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ls, 1)[0])


def peak_phase(row: dict) -> str:
    """`` (phase)``: where the sampled resident set was largest, when sampled."""
    peaks = row.get("peak_rss_by_phase") or {}
    return f" ({next(iter(peaks))})" if peaks else ""


def table(rows: list[dict]) -> str:
    """Markdown: one row per size (seconds per column, peak RSS), then one row of growth exponents."""
    rows = sorted(rows, key=lambda r: r["categories"])
    cols = [columns(r) for r in rows]
    names = list(cols[0])
    head = ["categories", "train images", "train patches", "bank rows", *names, "peak RSS GiB (in)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, c in zip(rows, cols):
        cells = [str(r["categories"]), str(r["train_images"]), f"{r['train_patches']:,}", f"{r['memory_bank']:,}",
                 *(f"{c[n]:.1f}" for n in names), f"{r['peak_rss_gib']:.2f}" + peak_phase(r)]
        lines.append("| " + " | ".join(cells) + " |")
    x = [r["train_patches"] for r in rows]
    exps = [growth_exponent(x, [c[n] for c in cols]) for n in names]
    rss = growth_exponent(x, [r["peak_rss_gib"] for r in rows])
    lines.append("| growth exponent (s ~ patches^b) | | | | " + " | ".join(
        "—" if e is None else f"{e:.2f}" for e in exps) + " | " + ("—" if rss is None else f"{rss:.2f}") + " |")
    return "\n".join(lines)


def anomalib_features(data: Path, categories: list[str], path: Path) -> dict[str, int]:
    """The pooled train and test splits' layer2/layer3 maps (the runner's ResNet-50, random weights, seed 42)
    into ``path`` as ``bench_models.fit_and_score`` reads them; returns the image counts."""
    from ad_core import SEED
    from ad_core.data.dataset import ImageSet
    from ad_core.data.splits import make_splits
    from ad_core.features import FeatureExtractor

    sets: dict[str, list] = {"train": [], "test": []}
    for c in categories:
        files = discover_category(data, c)
        splits = make_splits(files)
        sets["train"] += splits.samples(files, splits.train)
        sets["test"] += splits.samples(files, splits.test())
    extractor = FeatureExtractor("resnet50", ("layer2", "layer3"), weights="random", device="cpu", seed=SEED)
    saved = {name: list(extractor.batches(ImageSet(samples), progress=False)) for name, samples in sets.items()}
    saved["test_labels"] = [s.label for s in sets["test"]]
    torch.save(saved, path)
    return {name: len(samples) for name, samples in sets.items()}


def compare_worker(impl: str, path: Path) -> None:
    """One fit + score of PatchCore by ``impl`` ("ad_core" or "anomalib"), printed as JSON."""
    from bench_models import fit_and_score

    data = torch.load(path, weights_only=False)
    result = fit_and_score(impl, "patchcore", data)
    print(json.dumps({**result, "peak_rss_gib": peak_rss_gib()}))


def compare_anomalib(data: Path, categories: list[str], work: Path, timeout: float) -> dict[str, object]:
    """Ours and anomalib 2.7's Patchcore (both: coreset 5%, k=9, the paper's reweighting, sigma 4) fit and
    score the same features, each in a fresh process; anomalib stopped after ``timeout`` s is reported so."""
    path = work / f"anomalib-features-{len(categories)}.pt"
    counts = anomalib_features(data, categories, path)
    row: dict[str, object] = {"categories": len(categories), **counts}
    try:
        for impl in ("ad_core", "anomalib"):
            cmd = [sys.executable, __file__, "--compare-worker", impl, str(path)]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=True)
                row[impl] = json.loads(res.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                row[impl] = {"timeout_s": timeout}
    finally:
        path.unlink(missing_ok=True)
    return row


def anomalib_table(rows: list[dict]) -> str:
    head = ["categories", "train / test images", "ours fit s", "ours fit+score s", "anomalib fit s",
            "anomalib fit+score s", "ratio ours / anomalib", "image AUROC ours", "anomalib", "peak RSS GiB ours",
            "anomalib"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ours, theirs = r["ad_core"], r["anomalib"]
        if "timeout_s" in theirs:
            t = f"> {theirs['timeout_s']:.0f} (stopped)"
            cells = ["—", t, f"< {ours['total_s'] / theirs['timeout_s']:.3f}", f"{ours['auroc']:.4f}", "—",
                     f"{ours['peak_rss_gib']:.2f}", "—"]
        else:
            cells = [f"{theirs['fit_s']:.1f}", f"{theirs['total_s']:.1f}", f"{ours['total_s'] / theirs['total_s']:.3f}",
                     f"{ours['auroc']:.4f}", f"{theirs['auroc']:.4f}", f"{ours['peak_rss_gib']:.2f}",
                     f"{theirs['peak_rss_gib']:.2f}"]
        lines.append("| " + " | ".join([str(r["categories"]), f"{r['train']} / {r['test']}", f"{ours['fit_s']:.1f}",
                                        f"{ours['total_s']:.1f}", *cells]) + " |")
    return "\n".join(lines)


def replace_section(readme: Path, body: str, name: str = "scale") -> None:
    """Put ``body`` between ``<!-- {name}:begin -->`` and ``<!-- {name}:end -->`` of ``readme`` (appended
    with the markers when absent)."""
    text = readme.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 8, 15])
    p.add_argument("--work", type=Path, default=Path("/tmp/scale"))
    p.add_argument("--px", type=int, default=256, help="side of the synthetic PNGs (MVTec AD's: 700-1024)")
    p.add_argument("--feature-memory-gb", type=float, default=1.0,
                   help="feature maps the run holds in memory (RunConfig.feature_memory_gb; its default: 4)")
    p.add_argument("--device", default="auto", help="the runner's --device (auto: CUDA when available)")
    p.add_argument("--keep-features", action="store_true", help="keep each size's feature cache")
    p.add_argument("--readme", type=Path, help="write the table into this file's scale section")
    p.add_argument("--anomalib", type=int, nargs="+", metavar="SIZE",
                   help="instead of the curve: compare with anomalib 2.7's Patchcore at these sizes")
    p.add_argument("--anomalib-timeout", type=float, default=1800, help="seconds before anomalib is stopped")
    p.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument("--compare-worker", nargs=2, metavar=("IMPL", "FEATURES"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        data, out, *categories = args.child
        run_one(Path(data), categories, Path(out), feature_memory_gb=args.feature_memory_gb, device=args.device)
        return
    if args.compare_worker:
        compare_worker(args.compare_worker[0], Path(args.compare_worker[1]))
        return
    from ad_core.data.synthetic import write_synthetic_mvtec

    counts = mvtec_counts()
    names = list(counts)
    if max(args.sizes + (args.anomalib or [])) > len(names):
        p.error(f"MVTec AD has {len(names)} categories")
    # all 15 categories whatever the sizes: one copy serves every size (a subset would rewrite the marker)
    data = write_synthetic_mvtec(args.work / "data", counts, size=args.px, progress=True)
    if args.anomalib:
        rows = [compare_anomalib(data, names[:n], args.work, args.anomalib_timeout) for n in args.anomalib]
        body = anomalib_table(rows)
        print(body)
        if args.readme:
            cmd = "benchmarks/bench_scale.py --anomalib " + " ".join(map(str, args.anomalib))
            replace_section(args.readme, f"`.venv/bin/python {cmd}` ({time.strftime('%Y-%m-%d')}):\n\n{body}",
                            "scale-anomalib")
        return
    rows = []
    for n in args.sizes:
        row = measure(data, names[:n], args.work / f"unified-{n}", args.feature_memory_gb, args.keep_features,
                      args.device)
        rows.append(row)
        c = columns(row)
        print(f"{n:2d} categories: {row['train_patches']:,} patches, bank {row['memory_bank']:,}, backbone pass "
              f"{c['backbone pass']:.0f} s, the rest {c['total excl. backbone']:.0f} s (coreset {c['coreset']:.0f} s), "
              f"peak RSS {row['peak_rss_gib']:.2f} GiB", flush=True)
    body = table(rows)
    print(body)
    if args.readme:
        cmd = "benchmarks/bench_scale.py --sizes " + " ".join(map(str, args.sizes))
        if args.feature_memory_gb != 1.0:
            cmd += f" --feature-memory-gb {args.feature_memory_gb:g}"
        if args.device != "auto":
            cmd += f" --device {args.device}"
        devices = ", ".join(sorted({str(r.get("device", "cpu")) for r in rows}))
        replace_section(args.readme, f"`.venv/bin/python {cmd}` ({time.strftime('%Y-%m-%d')}, on {devices}):"
                                     f"\n\n{body}")


if __name__ == "__main__":
    main()
