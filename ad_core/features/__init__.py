"""Feature extraction shared by every method (docs/protocol.md §4).

Names are imported on first use (PEP 562), so ``import ad_core.features`` and the command
line's ``--help`` do not load torch.
"""

from __future__ import annotations

from typing import Any

# The backbones ``ad_core.features.backbones.BACKBONES`` defines (checked there at import).
BACKBONE_NAMES = ("resnet50", "wide_resnet50_2", "resnet18", "efficientnet_lite0")

_LAZY = {"BACKBONES": "backbones", "build_backbone": "backbones", "FeatureExtractor": "extractor",
         "WeightsError": "weights"}

__all__ = ["BACKBONES", "BACKBONE_NAMES", "FeatureExtractor", "WeightsError", "build_backbone"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ad_core.features.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ad_core.features' has no attribute {name!r}")
