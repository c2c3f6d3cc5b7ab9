"""Presets: each preset's preprocessing equals its reference implementation's on real images,
its settings reach the run, and explicit options win over it (docs/protocol.md §12)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torchvision import transforms as T

from ad_core.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from experiments.definition.config import RunConfig
from experiments.definition.presets import PRESETS, get_preset, preset_settings

pytestmark = pytest.mark.fast

# real photographs that ship inside scikit-image, of three shapes: 300x451 RGB, 400x600 RGB, 512x512 gray
REAL = {"chelsea": skdata.chelsea(), "coffee": skdata.coffee(), "camera": skdata.camera()}


def ours(name: str, image: np.ndarray) -> torch.Tensor:
    return RunConfig().with_settings(preset_settings(name)).preprocessor()(image)[0]


def paper_code_pipeline(image: np.ndarray) -> torch.Tensor:
    """What the PatchCore and PaDiM code feed the backbone: PIL image, Resize(256), CenterCrop(224),
    ToTensor, ImageNet Normalize (torchvision's PIL transforms)."""
    pil = Image.fromarray(image).convert("RGB")
    return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(pil)


def as_unit(x: torch.Tensor) -> torch.Tensor:
    """Normalised (3, H, W) back to [0, 1] intensities."""
    return x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]


@pytest.mark.parametrize("photo", list(REAL))
@pytest.mark.parametrize("preset", ["patchcore-paper", "padim-paper"])
def test_paper_presets_preprocess_as_the_papers_code(preset, photo):
    image = REAL[photo]
    x, ref = ours(preset, image), paper_code_pipeline(image)
    assert x.shape == ref.shape == (3, 224, 224)
    diff = (as_unit(x) - as_unit(ref)).abs()
    # the same geometry (shorter side 256, aspect kept, centre 224): PIL's and torch's antialiased
    # bilinear kernels round differently by a level or two, never by a shifted crop (which would move
    # edges by many levels: the study preset's plain 224 resize differs by > 10x this on these photos)
    assert diff.mean() < 1.5 / 255 and diff.max() < 0.2
    study = as_unit(ours("study", image))
    if image.shape[0] != image.shape[1]:
        assert (study - as_unit(ref)).abs().mean() > 10 * diff.mean()


@pytest.mark.anomalib
@pytest.mark.parametrize("photo", list(REAL))
@pytest.mark.parametrize("preset,model", [("anomalib-padim", "Padim"), ("anomalib-patchcore", "Patchcore")])
def test_anomalib_presets_preprocess_as_anomalib(preset, model, photo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import anomalib.models

    transform = getattr(anomalib.models, model).configure_pre_processor().transform
    image = REAL[photo]
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    # anomalib reads an image as float32 in [0, 1] (CHW) and applies its transform to that
    ref = transform(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    x = ours(preset, image)
    assert x.shape == ref.shape == (3, 256, 256)
    # we resize the uint8 image (the study's rule), anomalib the float one: torch's uint8 antialias
    # kernel rounds to within one intensity level of the float result (measured: max 1.0, mean 0.29)
    diff = (as_unit(x) - as_unit(ref)).abs()
    assert diff.max() <= 1 / 255 + 1e-6 and diff.mean() < 0.4 / 255


def test_masks_follow_the_image_geometry():
    pre = RunConfig().with_settings(preset_settings("patchcore-paper")).preprocessor()
    mask = np.zeros((400, 600), bool)
    mask[:, 300:] = True  # the right half: 400x600 -> 256x384, the centre crop cuts 80 px each side
    _, m = pre(np.zeros((400, 600, 3), np.uint8), mask)
    assert m.shape == (224, 224) and m.dtype == torch.bool
    assert not m[:, :112].any() and m[:, 112:].all()
    assert np.array_equal(pre.resize_mask(mask), m.numpy())


def test_preset_settings_fill_what_the_user_did_not_set():
    cfg = RunConfig().with_settings(preset_settings("patchcore-paper", {"patchcore.coreset_ratio": 0.01, "seed": None}))
    assert (cfg.preset, cfg.get("patchcore.coreset_ratio"), cfg.resize, cfg.image_size, cfg.split) == (
        "patchcore-paper", 0.01, 256, 224, "full_test")
    assert (cfg.get("patchcore.reweighting"), cfg.get("patchcore.blur_sigma"), cfg.get("patchcore.embedding")) == (
        "paper", 4.0, "original")
    assert cfg.methods == ["patchcore"] and cfg.scenarios == ["clean"] and cfg.seed == 42
    assert RunConfig().with_settings(preset_settings("study")) == RunConfig(preset="study")
    with pytest.raises(ValueError, match="Unknown preset 'nope'; choose from study, patchcore-paper"):
        get_preset("nope")


def test_backbone_follows_the_preset_with_data_and_stays_offline_on_built_in_data():
    for name, preset in PRESETS.items():
        cfg = RunConfig().with_settings(preset_settings(name))
        assert cfg.resolved_backbone() == "efficientnet_lite0"
        assert RunConfig().with_settings(preset_settings(name, {"data": "/x"})).resolved_backbone() == preset.backbone
    assert get_preset("padim-paper").padim_features("wide_resnet50_2") == 550
    assert get_preset("padim-paper").padim_features("resnet18") == 100
    assert get_preset("study").padim_features("resnet50") == 100
