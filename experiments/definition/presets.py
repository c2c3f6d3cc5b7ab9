"""Presets: named protocols a run follows, each a record of run settings (docs/protocol.md §12).

``study`` is the seed study's protocol (the default).  The others reproduce how a paper or a
library published its MVTec AD numbers, so that a run can be held against them
(``experiments.gates.verdict``): the backbone, the input geometry (resize then centre crop, or a
plain resize), the split (``full_test``: all of ``train/good`` to train, the whole test set to
evaluate, as the papers do), the method's settings and the published tables it is compared with.

A preset fills the run settings a user did not give (``apply_preset``); an explicit option
wins and the verdict then lists it as a difference from the published setting.  Adding a
preset is adding a record here (and its references in ``experiments/published/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    backbone: str  # used with --data (built-in datasets use the offline backbone unless --backbone is given)
    settings: Mapping[str, Any] = field(default_factory=dict)  # declared name ("seed", "patchcore.k") -> value
    padim_dims: Mapping[str, int] = field(default_factory=dict)  # backbone -> PaDiM dims (else 100)
    references: tuple[str, ...] = ()  # ids of the published tables a verdict compares with
    indicative: str | None = None  # set: no published numbers for this protocol; why the verdict is indicative

    def padim_features(self, backbone: str) -> int:
        return self.padim_dims.get(backbone, 100)


_PAPER_GEOMETRY = {"resize": 256, "image_size": 224}  # Resize(256) + CenterCrop(224), as the papers' code
_FULL_TEST = {"split": "full_test", "scenarios": ["clean"]}

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("study", "the seed study's protocol: 224x224 resize, seeded 80/20 + 30/70 splits, tau from validation, "
           "PatchCore coreset 5% with per-patch reweighting, PaDiM as anomalib runs it (docs/protocol.md §1-§9)",
           "resnet50",
           references=("patchcore-paper/coreset10", "anomalib/patchcore-wide_resnet50_2",
                       "anomalib/padim-wide_resnet50_2", "anomalib/padim-resnet18"),
           indicative="closest published setting, different protocol: indicative only (the study publishes no "
                      "per-metric numbers of its own; its test split is 70% of each category's anomalies, its "
                      "backbone ResNet-50 and its coreset 5%)"),
    Preset("patchcore-paper", "PatchCore as Roth et al. (CVPR 2022) published it: WideResNet-50 layer2+3, resize 256 "
           "then centre crop 224, the authors' 1024-d patch aggregation, coreset 10% (1% with --coreset-ratio 0.01), "
           "the paper's reweighting of the max patch, sigma=4 map blur, full MVTec AD test set",
           "wide_resnet50_2",
           {**_PAPER_GEOMETRY, **_FULL_TEST, "methods": ["patchcore"], "patchcore.coreset_ratio": 0.10,
            "patchcore.reweighting": "paper", "patchcore.blur_sigma": 4.0, "patchcore.embedding": "original"},
           references=("patchcore-paper/coreset10", "patchcore-paper/coreset1", "patchcore-paper/coreset25")),
    Preset("padim-paper", "PaDiM as Defard et al. (ICPR 2020 workshops) published it: WideResNet-50 layer1-3 with 550 "
           "random dims (ResNet-18: 100), resize 256 then centre crop 224, eps 0.01, sigma=4 map blur, full test set",
           "wide_resnet50_2",
           {**_PAPER_GEOMETRY, **_FULL_TEST, "methods": ["padim"]},
           padim_dims={"wide_resnet50_2": 550, "resnet18": 100},
           references=("padim-paper/wr50_rd550",)),
    Preset("anomalib-padim", "anomalib's Padim at its defaults (the study ran it): ResNet-18 layer1-3, 100 dims "
           "(WideResNet-50: 550), Resize(256, 256) without a crop, sigma=4 blur, full test set; its published "
           "per-category benchmark tables", "resnet18",
           {"image_size": 256, **_FULL_TEST, "methods": ["padim"]},
           padim_dims={"wide_resnet50_2": 550, "resnet18": 100},
           references=("anomalib/padim-resnet18", "anomalib/padim-wide_resnet50_2")),
    Preset("anomalib-patchcore", "anomalib's Patchcore at its defaults: WideResNet-50 layer2+3, coreset 10%, k=9, the "
           "paper's reweighting as anomalib computes it, Resize(256, 256) without a crop, sigma=4 blur, full test set",
           "wide_resnet50_2",
           {"image_size": 256, **_FULL_TEST, "methods": ["patchcore"], "patchcore.coreset_ratio": 0.10,
            "patchcore.reweighting": "paper", "patchcore.blur_sigma": 4.0},
           references=("anomalib/patchcore-wide_resnet50_2", "anomalib/patchcore-resnet18")),
)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose from {', '.join(PRESETS)}.")
    return PRESETS[name]


def preset_settings(name: str, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Declared settings (``"seed"``, ``"patchcore.k"``): the preset's, then every explicit (not None) one over
    them (``RunConfig().with_settings(...)`` makes the configuration)."""
    preset = get_preset(name)
    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    return {**preset.settings, **given, "preset": name}
