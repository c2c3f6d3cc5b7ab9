"""PatchCore scoring rules compared on ELPV, on the features and models of a finished run.

Image AUROC on the clean test cells of ``elpv_mono`` / ``elpv_poly`` for:
- the run's 5% coreset with the study's per-patch reweighting (k=9, the default),
  with no reweighting, and with the original PatchCore reweighting ("paper");
- the plain scorer of ELPV's reference point: max nearest-neighbour distance to a 10%
  random memory bank (seeded).
Reads ``<out>/models`` and the feature cache; computes nothing the run did not already have
features for.

Run: ``.venv/bin/python benchmarks/elpv_scoring_rules.py --out outputs-elpv``
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ad_core.models import PatchCore
from ad_core.models.kernels.knn import NearestNeighbours
from experiments.definition.config import RunConfig
from experiments.execution.runner import StudyRun


def random_bank_scores(train, test, fraction: float, seed: int = 0) -> np.ndarray:
    embed = PatchCore()
    patches = torch.cat([embed.embed_patches(b)[0] for b in train]).numpy()
    rng = np.random.default_rng(seed)
    knn = NearestNeighbours(patches[rng.choice(len(patches), int(fraction * len(patches)), replace=False)])
    scores = []
    for batch in test:
        q, (b, _, _) = embed.embed_patches(batch)
        scores.append(knn.search(q.numpy(), 1)[0][:, 0].reshape(b, -1).max(1))
    return np.concatenate(scores)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="outputs-elpv", help="the --out folder of an 'ad-repro run --dataset elpv'")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the image-level-only notices
    run = StudyRun.of(RunConfig(out=args.out, dataset="elpv", progress=False))
    print("| category | coreset 5%, study reweighting | coreset 5%, none | coreset 5%, paper | random 10%, none |")
    print("|---|---|---|---|---|")
    for cat in run.categories:
        samples = run.samples(cat, "clean", "test")
        labels = np.array([s.label for s in samples])
        test = run.store.batches(samples)
        model = run.model("patchcore", cat, "clean").model
        row = []
        for rule in ("study", "none", "paper"):
            model.reweighting = rule
            row.append(roc_auc_score(labels, model.score(test)[0]))
        model.reweighting = "study"
        train = run.store.batches(run.samples(cat, "clean", "train"))
        row.append(roc_auc_score(labels, random_bank_scores(train, test, 0.1)))
        print(f"| {cat} | " + " | ".join(f"{v:.3f}" for v in row) + " |")


if __name__ == "__main__":
    main()
