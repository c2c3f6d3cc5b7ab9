"""Figures, by name: ROC curves, confusion matrices, anomaly-map overlays, coreset trade-off,
cross-class heatmaps.  A scenario record lists the names it wants (``Scenario.figures``);
each figure function takes a ``ScenarioResult`` and returns the files it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from ad_core.data.io import atomic_open, read_image  # noqa: E402
from ad_core.data.preprocess import Preprocessor  # noqa: E402
from ad_core.metrics.catalog import IMAGE_AUROC  # noqa: E402
from experiments.evaluation.results import ScenarioResult, ScoreSet  # noqa: E402


@dataclass(frozen=True)
class FigureContext:
    """What figures need beyond the result: the image files behind relpaths, the model's preprocessing."""

    image_path: Callable[[str, str], Path]  # (category, relpath of a test image) -> file
    preprocess: Preprocessor = Preprocessor()


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def roc_curves(result: ScenarioResult, folder: Path, ctx: FigureContext) -> list[Path]:
    fig, axes = plt.subplots(1, len(result.methods), figsize=(4.2 * len(result.methods), 4), squeeze=False)
    for ax, m in zip(axes[0], result.methods):
        for cat, s in m.per_image.items():
            if m.per_class[cat].metrics[IMAGE_AUROC.name] is None:  # one label only: no ROC curve (said in the report)
                continue
            fpr, tpr, _ = roc_curve(s.labels, s.scores)
            ax.plot(fpr, tpr, label=f"{cat} ({m.per_class[cat].metrics[IMAGE_AUROC.name]:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=m.key, xlabel="FPR", ylabel="TPR")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.scenario}: image ROC")
    return [_save(fig, folder / f"roc_{result.scenario}.png")]


def confusion_matrices(result: ScenarioResult, folder: Path, ctx: FigureContext) -> list[Path]:
    cats = list(result.methods[0].per_class)
    n = len(result.methods)
    fig, axes = plt.subplots(n, len(cats), figsize=(2.4 * len(cats), 2.3 * n), squeeze=False)
    for r, m in enumerate(result.methods):
        for c, cat in enumerate(cats):
            cm = np.array(m.per_class[cat].confusion)
            ax = axes[r][c]
            ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, cm.max()))
            for (i, j), v in np.ndenumerate(cm):  # white digits on the dark half of the colour scale
                ax.text(j, i, str(v), ha="center", va="center", fontweight="bold",
                        color="white" if v > 0.5 * cm.max() else "black")
            ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["N", "A"], yticklabels=["N", "A"],
                   title=f"{m.key}\n{cat}", xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return [_save(fig, folder / f"confusion_{result.scenario}.png")]


def overlay_picks(s: ScoreSet, defects: list[str], per_class: int) -> list[int]:
    """Up to ``per_class`` anomalous images of one class, one per defect type in turn (the highest-scoring
    of each type first), so that a class's figure shows its different defects, not one type twice."""
    by_type: dict[str, list[int]] = {}
    for i in np.flatnonzero(s.labels == 1):
        by_type.setdefault(defects[i], []).append(int(i))
    queues = [sorted(idx, key=lambda i: -s.scores[i]) for _, idx in sorted(by_type.items())]
    picks: list[int] = []
    while len(picks) < per_class and any(queues):
        for q in queues:
            if q and len(picks) < per_class:
                picks.append(q.pop(0))
    return picks


def overlays(result: ScenarioResult, folder: Path, ctx: FigureContext, per_class: int = 3) -> list[Path]:
    """For each method with maps: anomalous test images of different defect types, their map on one
    colour scale per method (colorbar), the ground-truth contour (white) and the map's tau contour
    (dashed black: where the map reaches the class's image threshold)."""
    paths = []
    pre = ctx.preprocess
    for m in result.methods:
        picks = [(cat, i) for cat, s in m.per_image.items() if s.maps is not None
                 for i in overlay_picks(s, [Path(r).parent.name for r in s.relpaths], per_class)]
        if not picks:
            continue
        high = max(float(np.max(m.per_image[cat].maps[i])) for cat, i in picks)
        fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks) + 0.8, 2.9), squeeze=False)
        im = None
        for ax, (cat, i) in zip(axes[0], picks):
            s = m.per_image[cat]
            x, _ = pre(read_image(ctx.image_path(cat, s.relpaths[i])))
            rgb = (x.permute(1, 2, 0).numpy() * np.array(pre.std) + np.array(pre.mean)).clip(0, 1)
            ax.imshow(rgb)
            im = ax.imshow(s.maps[i], cmap="jet", alpha=0.45, vmin=0, vmax=high)
            if s.masks is not None and s.masks[i].any():
                ax.contour(s.masks[i], levels=[0.5], colors="white", linewidths=1)
            tau = m.thresholds[cat]
            if np.min(s.maps[i]) < tau < np.max(s.maps[i]):
                ax.contour(s.maps[i], levels=[tau], colors="black", linewidths=0.8, linestyles="dashed")
            ax.set_title(f"{cat}\n{s.relpaths[i]}\nscore {s.scores[i]:.3g} (tau {tau:.3g})", fontsize=7)
            ax.axis("off")
        fig.colorbar(im, ax=list(axes[0]), fraction=0.02, pad=0.01, label="anomaly map")
        fig.suptitle(f"{result.scenario} / {m.key}: white = ground truth, dashed = map at tau", fontsize=9)
        paths.append(_save(fig, folder / f"overlays_{result.scenario}_{m.slug}.png"))
    return paths


def coreset_tradeoff(result: ScenarioResult, folder: Path, ctx: FigureContext) -> list[Path]:
    """Mean image AUROC, memory-bank size and fit time against the coreset ratio of each swept model."""
    rows = []
    for m in result.methods:
        if m.coreset_ratio is None:
            continue
        pcs = m.per_class.values()
        rows.append((m.coreset_ratio, m.mean()[IMAGE_AUROC.name], np.mean([p.memory_bank_size for p in pcs]),
                     np.mean([p.fit_seconds for p in pcs])))
    if not rows:
        return []
    rows.sort()
    r, auroc, bank, secs = map(np.array, zip(*rows))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, y, label in zip(axes, (auroc, bank, secs), ("mean image AUROC", "memory bank size", "fit seconds")):
        ax.plot(r * 100, y, "o-")
        ax.set(xlabel="coreset ratio (%)", ylabel=label)
    fig.suptitle(f"{result.scenario}: {result.description}", fontsize=9)
    fig.tight_layout()
    return [_save(fig, folder / f"coreset_tradeoff_{result.scenario}.png")]


def cross_class_heatmaps(result: ScenarioResult, folder: Path, ctx: FigureContext) -> list[Path]:
    paths = []
    for m in result.methods:
        if m.shortcut is None:
            continue
        cc = m.cross_class_confusion
        cats = list(cc)
        mat = np.array([[cc[i][j] for j in cats] for i in cats])
        fig, ax = plt.subplots(figsize=(1.2 * len(cats) + 2, 1.1 * len(cats) + 1.5))
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
        ax.set(xticks=range(len(cats)), yticks=range(len(cats)), xticklabels=cats, yticklabels=cats,
               xlabel="threshold of class", ylabel="normal test images of class", title=f"{m.key}: flagged fraction")
        fig.colorbar(im, ax=ax)
        paths.append(_save(fig, folder / f"cross_class_{result.scenario}_{m.slug}.png"))
    return paths


FigureFunction = Callable[[ScenarioResult, Path, FigureContext], list[Path]]
FIGURES: dict[str, FigureFunction] = {
    "roc": roc_curves,
    "confusion": confusion_matrices,
    "overlays": overlays,
    "coreset_tradeoff": coreset_tradeoff,
    "cross_class": cross_class_heatmaps,
}


def draw(result: ScenarioResult, names: tuple[str, ...], folder: Path, ctx: FigureContext) -> list[Path]:
    """Draw the named figures of one scenario; return every file written."""
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {', '.join(FIGURES)}")
    return [path for name in names for path in FIGURES[name](result, folder, ctx)]
