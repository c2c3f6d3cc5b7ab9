"""The study's preprocessing: 224x224, [0,1], ImageNet normalisation, gray -> 3 channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ad_core.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessor

pytestmark = pytest.mark.fast


def test_constant_image_normalises_to_imagenet_formula():
    x, m = Preprocessor()(np.full((300, 400, 3), 128, np.uint8))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    # the protocol's numbers written out (docs/protocol.md §1), not the module's constants
    expected = [(128 / 255 - mu) / sd for mu, sd in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-6)
    assert m.shape == (224, 224) and m.dtype == torch.bool and not m.any()


def test_gray_is_repeated_into_three_channels():
    gray = np.random.default_rng(0).integers(0, 256, (100, 120), dtype=np.uint8)
    x, _ = Preprocessor()(gray)
    raw = [x[c] * IMAGENET_STD[c] + IMAGENET_MEAN[c] for c in range(3)]
    assert torch.allclose(raw[0], raw[1], atol=1e-6) and torch.allclose(raw[1], raw[2], atol=1e-6)


def test_resize_is_bilinear_like_pil():
    img = np.random.default_rng(1).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    x, _ = Preprocessor()(img)
    ref = np.asarray(Image.fromarray(img).resize((224, 224), Image.BILINEAR)).astype(np.float32) / 255
    raw = (x.permute(1, 2, 0) * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)).numpy()
    assert np.abs(raw - ref).mean() < 2 / 255  # both antialiased bilinear; rounding differs


def test_mask_is_nearest_resized_and_binary():
    mask = np.zeros((448, 448), bool)
    mask[100:200, 50:250] = True  # even edges: exactly 50x100 at half size
    _, m = Preprocessor()(np.zeros((448, 448, 3), np.uint8), mask)
    assert m.dtype == torch.bool
    assert int(m.sum()) == 50 * 100
    assert np.array_equal(Preprocessor().resize_mask(mask), m.numpy())
    # nearest at exactly half size takes one source pixel per output pixel: no averaging at all
    noise = np.random.default_rng(3).random((448, 448)) < 0.5
    assert np.array_equal(Preprocessor().resize_mask(noise), noise[::2, ::2])
    _, m_noise = Preprocessor()(np.zeros((448, 448, 3), np.uint8), noise)
    assert np.array_equal(m_noise.numpy(), noise[::2, ::2])
