"""Every scenario of the study as a small declarative record (docs/protocol.md §8-9).

A scenario says which domain's train split the model is fit on, which domain's
validation split calibrates tau, which domain's test split is evaluated, whether one
model serves all classes (unified) and whether tau is per class or global.  Adding a
scenario is adding a record here; the runner, plots and report have no per-scenario code
paths (a record names the figures it wants, drawn by ``experiments.reporting.plots.FIGURES``).
"""

from __future__ import annotations

from dataclasses import dataclass

BASIC_FIGURES = ("roc", "confusion", "overlays")


@dataclass(frozen=True)
class Scenario:
    name: str
    fit_domain: str
    calib_domain: str
    eval_domain: str
    description: str
    unified: bool = False  # one model on the pooled train splits of all classes
    global_threshold: bool = False  # one tau from the pooled validation split
    methods: tuple[str, ...] | None = None  # None: every registered method (experiments.definition.methods)
    coreset_ratios: tuple[float, ...] | None = None  # PatchCore ablation: one model per ratio
    shortcut_analysis: bool = False  # cross-class confusion + feature separation
    figures: tuple[str, ...] = BASIC_FIGURES


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("clean", "clean", "clean", "clean",
             "train on Train-clean, tau from Val-clean, evaluate on Test-clean"),
    Scenario("shift_no_adaptation", "clean", "clean", "shift",
             "clean models and clean tau, evaluated on Test-shift"),
    Scenario("shift_threshold_only", "clean", "shift", "shift",
             "clean models, tau re-calibrated on Val-shift, evaluated on Test-shift"),
    Scenario("shift_full_adaptation", "shift", "shift", "shift",
             "models retrained on Train-shift, tau from Val-shift, evaluated on Test-shift"),
    Scenario("unified", "clean", "clean", "clean",
             "one model per method on the pooled Train-clean of all classes, per-class tau",
             unified=True, shortcut_analysis=True, figures=(*BASIC_FIGURES, "cross_class")),
    Scenario("absolute_unified", "clean", "clean", "clean",
             "the unified model with one global tau from the pooled Val-clean",
             unified=True, global_threshold=True),
    Scenario("coreset_ablation", "shift", "shift", "shift",
             "PatchCore with coreset ratio 1/5/10% on Train-shift, tau from Val-shift, Test-shift",
             methods=("patchcore",), coreset_ratios=(0.01, 0.05, 0.10), figures=(*BASIC_FIGURES, "coreset_tradeoff")),
)}


def select(names: list[str] | None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS.values())
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]
