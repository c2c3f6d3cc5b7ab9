"""Uncertainty of a run's numbers: bootstrap intervals per class, the study's claims as paired
differences, and the spread over seeds (docs/protocol.md §9).

- ``class_intervals``: 95% bootstrap interval of every metric of one class's test set
  (``ad_core.metrics.bootstrap``: stratified, seeded by the run's seed, 1,000 resamples).
- ``CLAIMS``: the comparisons the study draws, as records; ``evaluate_claims`` gives each as a
  macro-mean difference over classes with its paired bootstrap interval.
- ``aggregate``: mean, sd, min and max of every number over the runs of several seeds, and
  for each claim in how many seeds it held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ad_core.metrics import metric, metric_names
from ad_core.metrics.bootstrap import N_RESAMPLES, image_intervals, image_statistics, paired_difference, pixel_intervals
from ad_core.metrics.catalog import IMAGE_AUROC, IMAGE_F1
from ad_core.timing import phase
from experiments.evaluation.results import ScenarioResult, ScoreSet


@phase("bootstrap intervals")
def class_intervals(test: ScoreSet, tau: float, seed: int, pixel_memo: dict | None = None) -> dict[str, list[float]]:
    """[low, high] of each metric of one class; pixel metrics only where maps and masks exist.

    ``pixel_memo``: pixel intervals by ``id(test)`` (they do not depend on tau; scenarios share sets).
    """
    ci = image_intervals(test.scores, test.labels, tau, seed)
    if test.maps is not None and test.masks is not None and test.masks.any():
        memo = {} if pixel_memo is None else pixel_memo
        if id(test) not in memo:
            memo[id(test)] = pixel_intervals(test.maps, test.masks, test.labels, seed)
        ci.update(memo[id(test)])
    return {k: [lo, hi] for k, (lo, hi) in ci.items()}


@dataclass(frozen=True)
class Claim:
    """"``a`` beats ``b`` on ``metric``": (scenario, method) on each side, paired on the same test images."""

    text: str
    metric: str
    a: tuple[str, str]  # (scenario, method key)
    b: tuple[str, str]


def _claims() -> list[Claim]:
    out = [Claim("PatchCore > PaDiM on clean image AUROC", IMAGE_AUROC.name, ("clean", "patchcore"),
                 ("clean", "padim"))]
    for m, name in (("patchcore", "PatchCore"), ("padim", "PaDiM")):
        out += [
            Claim(f"{name}: the shift lowers image AUROC (clean > shifted, no adaptation)", IMAGE_AUROC.name,
                  ("clean", m), ("shift_no_adaptation", m)),
            Claim(f"{name}: re-calibrating tau on Val-shift raises F1 over the clean tau", IMAGE_F1.name,
                  ("shift_threshold_only", m), ("shift_no_adaptation", m)),
            Claim(f"{name}: retraining on Train-shift raises image AUROC over no adaptation", IMAGE_AUROC.name,
                  ("shift_full_adaptation", m), ("shift_no_adaptation", m)),
            Claim(f"{name}: per-class models beat the unified model on image AUROC", IMAGE_AUROC.name,
                  ("clean", m), ("unified", m)),
        ]
    return out


CLAIMS = _claims()
log = logging.getLogger("ad-repro")


def _statistic(metric: str, tau: float):
    return image_statistics(tau)[metric]


def evaluate_claims(results: dict[str, ScenarioResult], seed: int) -> list[dict]:
    """Every claim whose two sides ran: difference a - b (macro mean over classes), paired 95% CI."""
    out = []
    for claim in CLAIMS:
        sides = []
        for scenario, key in (claim.a, claim.b):
            r = results.get(scenario)
            sides.append(r.find(key) if r else None)
        if None in sides or metric(claim.metric).level != "image" or metric(claim.metric).bootstrap is None:
            continue
        ma, mb = sides
        one_label = sorted(c for m in sides for c, pc in m.per_class.items() if pc.image_metrics_absent)
        if one_label:  # its macro mean is undefined: a claim over the other classes would be another claim
            log.warning("claim %r not evaluated: the test set of %s holds one label only", claim.text,
                        ", ".join(dict.fromkeys(one_label)))
            continue
        strata, labels = [], []
        for c in ma.per_image:
            ta, tb = ma.per_image[c], mb.per_image[c]
            if ta.relpaths != tb.relpaths:
                raise ValueError(f"claim {claim.text!r}: the test images of {c} differ between its two sides")
            strata.append((ta.scores, tb.scores, _statistic(claim.metric, ma.thresholds[c]),
                           _statistic(claim.metric, mb.thresholds[c])))
            labels.append(ta.labels)
        point, (lo, hi) = paired_difference(strata, labels, seed)
        verdict = "holds" if lo > 0 else ("reversed" if hi < 0 else "not resolved (the interval spans 0)")
        out.append({"claim": claim.text, "metric": claim.metric, "a": list(claim.a), "b": list(claim.b),
                    "difference": point, "ci95": [lo, hi], "verdict": verdict, "n_resamples": N_RESAMPLES})
    return out


def aggregate(per_seed: dict[int, list[ScenarioResult]], claims: dict[int, list[dict]]) -> dict:
    """Mean, sd (ddof 1), min, max of every per-class and mean metric over seeds; claims per seed."""
    numbers: dict[tuple[str, str, str, str], list[float]] = {}
    for results in per_seed.values():
        for r in results:
            for key, entry, values in r.entries():
                for name in metric_names():
                    v = values[name]
                    if v is not None:
                        numbers.setdefault((r.scenario, key, entry, name), []).append(v)
    table: dict = {}
    for (scenario, key, entry, name), vs in sorted(numbers.items()):
        a = np.array(vs)
        table.setdefault(scenario, {}).setdefault(key, {}).setdefault(entry, {})[name] = {
            "mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n_seeds": len(a)}
    by_claim: dict[str, dict] = {}
    for seed, cs in claims.items():
        for c in cs:
            e = by_claim.setdefault(c["claim"], {"claim": c["claim"], "metric": c["metric"], "per_seed": {}})
            e["per_seed"][str(seed)] = {"difference": c["difference"], "ci95": c["ci95"], "verdict": c["verdict"]}
    for e in by_claim.values():
        d = np.array([s["difference"] for s in e["per_seed"].values()])
        e.update(mean_difference=float(d.mean()), sd_difference=float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                 positive_in=int((d > 0).sum()), holds_in=sum(s["verdict"] == "holds" for s in e["per_seed"].values()),
                 n_seeds=len(d))
    return {"seeds": sorted(per_seed), "metrics": table, "claims": list(by_claim.values())}


def claim_line(c: dict) -> str:
    lo, hi = c["ci95"]
    return f"{c['claim']}: {c['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}], {c['verdict']}"
