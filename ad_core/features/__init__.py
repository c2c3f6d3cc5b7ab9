"""Feature extraction shared by PatchCore and PaDiM (docs/protocol.md §4)."""

from ad_core.features.backbones import BACKBONES, build_backbone
from ad_core.features.extractor import FeatureExtractor
from ad_core.features.weights import WeightsError

__all__ = ["BACKBONES", "FeatureExtractor", "WeightsError", "build_backbone"]
