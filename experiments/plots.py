"""Figures: ROC curves, confusion matrices, anomaly-map overlays, coreset trade-off, cross-class heatmap."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from ad_core.data.io import atomic_write_bytes, read_image  # noqa: E402
from ad_core.data.preprocess import Preprocessor  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def roc_curves(result: dict, folder: Path) -> Path:
    per_image = result["_per_image"]
    fig, axes = plt.subplots(1, len(per_image), figsize=(4.2 * len(per_image), 4), squeeze=False)
    for ax, (method, per_class) in zip(axes[0], per_image.items()):
        for cat, s in per_class.items():
            fpr, tpr, _ = roc_curve(s.labels, s.scores)
            auc = result["methods"][method]["per_class"][cat]["image_auroc"]
            ax.plot(fpr, tpr, label=f"{cat} ({auc:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=method, xlabel="FPR", ylabel="TPR")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['scenario']}: image ROC")
    return _save(fig, folder / f"roc_{result['scenario']}.png")


def confusion_matrices(result: dict, folder: Path) -> Path:
    methods = result["methods"]
    cats = list(next(iter(methods.values()))["per_class"])
    fig, axes = plt.subplots(len(methods), len(cats), figsize=(2.4 * len(cats), 2.3 * len(methods)), squeeze=False)
    for r, (method, m) in enumerate(methods.items()):
        for c, cat in enumerate(cats):
            cm = np.array(m["per_class"][cat]["confusion"])
            ax = axes[r][c]
            ax.imshow(cm, cmap="Blues")
            for (i, j), v in np.ndenumerate(cm):
                ax.text(j, i, str(v), ha="center", va="center")
            ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["N", "A"], yticklabels=["N", "A"],
                   title=f"{method}\n{cat}", xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return _save(fig, folder / f"confusion_{result['scenario']}.png")


def overlays(result: dict, samples_of: dict[str, dict[str, Path]], folder: Path, per_class: int = 2) -> list[Path]:
    """For each method: anomalous test images, their map and the ground-truth contour."""
    paths = []
    pre = Preprocessor()
    for method, by_cat in result["_per_image"].items():
        picks = [(cat, i) for cat, s in by_cat.items() if s.maps is not None
                 for i in np.flatnonzero(s.labels == 1)[:per_class]]
        if not picks:
            continue
        fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks), 2.8), squeeze=False)
        for ax, (cat, i) in zip(axes[0], picks):
            s = by_cat[cat]
            x, _ = pre(read_image(samples_of[cat][s.relpaths[i]]))
            rgb = (x.permute(1, 2, 0).numpy() * np.array(pre.std) + np.array(pre.mean)).clip(0, 1)
            ax.imshow(rgb)
            ax.imshow(s.maps[i], cmap="jet", alpha=0.45)
            if s.masks is not None and s.masks[i].any():
                ax.contour(s.masks[i], levels=[0.5], colors="white", linewidths=1)
            ax.set_title(f"{cat}\n{s.relpaths[i]}", fontsize=7)
            ax.axis("off")
        fig.suptitle(f"{result['scenario']} / {method}", fontsize=9)
        safe = method.replace("@", "_").replace("=", "")
        paths.append(_save(fig, folder / f"overlays_{result['scenario']}_{safe}.png"))
    return paths


def coreset_tradeoff(result: dict, folder: Path) -> Path:
    rows = []
    for method, m in result["methods"].items():
        ratio = float(method.split("=")[1])
        pcs = m["per_class"].values()
        rows.append((ratio, m["mean"]["image_auroc"], np.mean([p["memory_bank_size"] for p in pcs]),
                     np.mean([p["fit_seconds"] for p in pcs])))
    rows.sort()
    r, auroc, bank, secs = map(np.array, zip(*rows))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    for ax, y, label in zip(axes, (auroc, bank, secs), ("mean image AUROC", "memory bank size", "fit seconds")):
        ax.plot(r * 100, y, "o-")
        ax.set(xlabel="coreset ratio (%)", ylabel=label)
    fig.suptitle("PatchCore coreset ablation (Train-shift / Val-shift / Test-shift)")
    fig.tight_layout()
    return _save(fig, folder / "coreset_tradeoff.png")


def cross_class_heatmaps(result: dict, folder: Path) -> list[Path]:
    paths = []
    for method, m in result["methods"].items():
        cc = m["shortcut"]["cross_class_confusion"]
        cats = list(cc)
        mat = np.array([[cc[i][j] for j in cats] for i in cats])
        fig, ax = plt.subplots(figsize=(1.2 * len(cats) + 2, 1.1 * len(cats) + 1.5))
        im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
        ax.set(xticks=range(len(cats)), yticks=range(len(cats)), xticklabels=cats, yticklabels=cats,
               xlabel="threshold of class", ylabel="normal test images of class", title=f"{method}: flagged fraction")
        fig.colorbar(im, ax=ax)
        paths.append(_save(fig, folder / f"cross_class_{method}.png"))
    return paths
