"""Pixel-metric cost at the study's test-set size, each printed as a ratio from the same run.

Run: ``.venv/bin/python benchmarks/bench_pro.py``.  (1) exact PRO curve vs the naive approach
several libraries take (re-threshold the maps at each of K thresholds and relabel); the exact
curve sorts once.  (2) what every evaluation computes, ``pixel_metrics`` (pixel AUROC and PRO
from one sort) vs scikit-learn's ``roc_auc_score`` plus the PRO on its own (two sorts).
"""

from __future__ import annotations

import time

import numpy as np
from skimage.measure import label
from sklearn.metrics import roc_auc_score

from ad_core.metrics import pixel_metrics, pro_score


def per_threshold(maps: np.ndarray, masks: np.ndarray, k: int) -> None:
    labels = [label(m, connectivity=2) for m in masks]
    neg = ~masks
    for t in np.linspace(maps.max(), maps.min(), k):
        hit = maps >= t
        _ = (hit & neg).sum() / neg.sum()
        _ = [np.bincount(lab[h], minlength=lab.max() + 1) for lab, h in zip(labels, hit)]


def main() -> None:
    rng = np.random.default_rng(0)
    n = 89  # hazelnut test set: 40 normal + 49 anomalous
    masks = np.zeros((n, 224, 224), bool)
    for i in range(40, n):
        y, x = rng.integers(0, 180, 2)
        masks[i, y:y + rng.integers(8, 44), x:x + rng.integers(8, 44)] = True
    maps = (rng.random(masks.shape) + 0.5 * masks).astype(np.float32)
    t0 = time.perf_counter()
    value = pro_score(maps, masks)
    exact = time.perf_counter() - t0
    k = 200
    t0 = time.perf_counter()
    per_threshold(maps, masks, k)
    naive = time.perf_counter() - t0
    print(f"images {n}x224x224  PRO {value:.4f}")
    print(f"exact curve (every distinct score, {maps.size} points): {exact:.2f} s")
    print(f"per-threshold reference ({k} thresholds):              {naive:.2f} s")
    print(f"ratio exact / reference: {exact / naive:.2f}")
    t0 = time.perf_counter()
    auroc, _ = pixel_metrics(maps, masks)
    shared = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = roc_auc_score(masks.ravel(), maps.ravel())
    pro_score(maps, masks)
    separate = time.perf_counter() - t0
    print(f"pixel AUROC {auroc:.6f} (scikit-learn {reference:.6f}) + PRO, one sort (pixel_metrics): {shared:.2f} s")
    print(f"scikit-learn roc_auc_score + pro_score (two sorts):                       {separate:.2f} s")
    print(f"ratio one sort / two: {shared / separate:.2f}")


if __name__ == "__main__":
    main()
