"""MVTec-Shift (docs/protocol.md §3): parameter ranges, determinism, mask/image alignment, writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ad_core.data.io import read_image, read_mask
from ad_core.data.layouts.mvtec import discover_category
from ad_core.seeding import rng_for
from ad_core.shift import ShiftParams, apply_shift, sample_shift_params, write_shifted_category
from ad_core.shift.transform import ILLUM_KINDS, illumination_map

pytestmark = pytest.mark.fast

seeds = st.integers(0, 2**32 - 1)


def _params(seed: int) -> ShiftParams:
    return sample_shift_params(np.random.default_rng(seed))


@given(seeds)
def test_sampled_parameters_lie_in_the_study_ranges(seed):
    p = _params(seed)
    assert -10 <= p.angle <= 10 and 0.9 <= p.scale <= 1.0
    assert all(-0.1 <= t <= 0.1 for t in p.translate)
    assert all(0.7 <= f <= 1.3 for f in (p.brightness, p.contrast, p.saturation))
    assert p.blur_kernel in (3, 5) and 0.1 <= p.blur_sigma <= 2.0
    assert 0.01 <= p.noise_sigma <= 0.05
    assert p.illumination in (None, *ILLUM_KINDS) and 0.4 <= p.illumination_strength <= 0.7


def test_effect_probabilities_are_one_half():
    ps = [_params(s) for s in range(2000)]
    for rate in (np.mean([p.blur for p in ps]), np.mean([p.noise for p in ps]),
                 np.mean([p.illumination is not None for p in ps])):
        assert abs(rate - 0.5) < 0.04  # 2000 draws: 3.6 standard deviations


def test_per_image_generator_is_deterministic_and_distinct():
    a = sample_shift_params(rng_for(42, "carpet", "test/good/000.png"))
    assert a == sample_shift_params(rng_for(42, "carpet", "test/good/000.png"))
    assert a != sample_shift_params(rng_for(42, "carpet", "test/good/001.png"))
    assert a != sample_shift_params(rng_for(42, "zipper", "test/good/000.png"))
    assert a != sample_shift_params(rng_for(43, "carpet", "test/good/000.png"))
    assert ShiftParams.from_json(json.loads(json.dumps(a.to_json()))) == a


def _marker_scene(cy: int, cx: int, h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), bool)
    image[cy - 8:cy + 8, cx - 10:cx + 10] = 255
    mask[cy - 8:cy + 8, cx - 10:cx + 10] = True
    return image, mask


@settings(max_examples=60, deadline=None)
@given(seed=seeds, cy=st.integers(30, 66), cx=st.integers(35, 93))
def test_marker_painted_in_image_and_mask_stays_colocated(seed, cy, cx):
    image, mask = _marker_scene(cy, cx)
    params = _params(seed)
    out, out_mask = apply_shift(image, mask, params)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out_mask.dtype == bool and out_mask.shape == mask.shape
    # geometry alone: the bright marker and the mask cover the same pixels
    geo, geo_mask = apply_shift(image, mask, params.geometric_only())
    assert np.array_equal(geo_mask, out_mask)  # photometry never touches the mask
    bright = geo[..., 0] > 127
    iou = (bright & geo_mask).sum() / (bright | geo_mask).sum()
    assert iou > 0.85, iou
    # the full shift keeps the marker where the mask is: clearly brighter inside
    inside, outside = out[out_mask].mean(), out[~out_mask].mean()
    assert inside > outside + 0.05 * 255, (inside, outside)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, gray=st.booleans())
def test_masks_stay_binary_and_shapes_dtypes_are_kept(seed, gray):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (40, 56) if gray else (40, 56, 3), dtype=np.uint8)
    mask = rng.random((40, 56)) < 0.3
    out, out_mask = apply_shift(image, mask, _params(seed))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out_mask.dtype == bool and set(np.unique(out_mask)) <= {False, True}
    assert out_mask.sum() <= mask.sum() * 1.3 + 10  # zoom-out never grows a region much


def test_normal_mask_stays_empty_and_none_stays_none():
    image = np.full((32, 32, 3), 90, np.uint8)
    _, m = apply_shift(image, np.zeros((32, 32), bool), _params(3))
    assert not m.any()
    out, none = apply_shift(image, None, _params(3))
    assert none is None and out.shape == image.shape


def test_identity_parameters_leave_the_image_unchanged():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    ident = ShiftParams(0.0, 1.0, (0.0, 0.0), 1.0, 1.0, 1.0, False, 3, 1.0, False, 0.01, 0, None, 0.5)
    out, _ = apply_shift(image, None, ident)
    assert np.array_equal(out, image)


@pytest.mark.parametrize("kind", ILLUM_KINDS)
def test_illumination_darkens_the_named_side(kind):
    light = illumination_map(200, 300, kind, 0.6)
    assert light.shape == (200, 300) and light.max() <= 1.0 + 1e-6 and light.min() >= 0.4 - 1e-6
    side = {"left": light[:, :20], "right": light[:, -20:], "top": light[:20], "bottom": light[-20:]}
    centre, corner = light[90:110, 140:160].mean(), light[:20, :20].mean()
    if kind in side:
        opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[kind]
        assert side[kind].mean() < side[opposite].mean() - 0.3
    elif kind == "radial_center":
        assert centre > corner + 0.2
    else:
        assert centre < corner - 0.2


def test_illumination_smoothing_scales_with_image_size():
    small, large = illumination_map(64, 64, "left", 0.5), illumination_map(512, 512, "left", 0.5)
    # same look at any size: the profile, sampled at the same relative positions, agrees
    assert np.abs(small[32, ::8] - large[256, ::64]).max() < 0.03


def test_writer_keeps_layout_logs_parameters_and_is_deterministic_whatever_the_threads(make_category, tmp_path):
    cat = make_category(gray=True)
    files = discover_category(cat.parent, cat.name)
    dst = write_shifted_category(files, tmp_path / "a", seed=42, progress=False)  # one thread per core
    dst2 = write_shifted_category(files, tmp_path / "b", seed=42, progress=False, workers=1)  # one image at a time
    shifted = discover_category(dst.parent, cat.name)
    assert [s.relpath for s in shifted.test_anomalous] == [s.relpath for s in files.test_anomalous]
    log = json.loads((dst / "shift_params.json").read_text())
    assert log["seed"] == 42 and set(log["images"]) == {s.relpath for s in files.by_relpath().values()}
    for s in files.by_relpath().values():
        assert (dst / s.relpath).read_bytes() == (dst2 / s.relpath).read_bytes()
    sample = files.test_anomalous[0]
    params = ShiftParams.from_json(log["images"][sample.relpath])
    expect, expect_mask = apply_shift(read_image(sample.path), read_mask(sample.mask), params)
    assert np.array_equal(read_image(dst / sample.relpath), expect)  # gray stays gray
    assert np.array_equal(read_mask(shifted.test_anomalous[0].mask), expect_mask)
    mtime = (dst / "shift_params.json").stat().st_mtime_ns
    write_shifted_category(files, tmp_path / "a", seed=42, progress=False)  # complete: kept
    assert (dst / "shift_params.json").stat().st_mtime_ns == mtime


def test_sampled_parameters_fill_the_study_ranges():
    """2,000 draws reach near both ends of every range (a narrowed range fails here)."""
    ps = [_params(s) for s in range(2000)]

    def spans(values, lo, hi):
        v = np.asarray(values)
        return v.min() < lo + 0.02 * (hi - lo) and v.max() > hi - 0.02 * (hi - lo)

    assert spans([p.angle for p in ps], -10, 10) and spans([p.scale for p in ps], 0.9, 1.0)
    assert spans([t for p in ps for t in p.translate], -0.1, 0.1)
    for f in ("brightness", "contrast", "saturation"):
        assert spans([getattr(p, f) for p in ps], 0.7, 1.3), f
    assert spans([p.blur_sigma for p in ps], 0.1, 2.0) and spans([p.noise_sigma for p in ps], 0.01, 0.05)
    assert spans([p.illumination_strength for p in ps], 0.4, 0.7)


def test_illumination_is_smoothed_by_7_8_percent_of_the_side():
    """A bright-centre radial map is a cone (1.0 at its apex) before smoothing; a Gaussian of sigma
    s = 80/1024 of the side lowers the apex to 1 - k E|r| with E|r| = s sqrt(pi/2) / hypot(.5, .5)."""
    expected = 1 - 0.5 * (80 / 1024) * np.sqrt(np.pi / 2) / np.hypot(0.5, 0.5)  # 0.931
    for side in (96, 256):
        light = illumination_map(side, side, "radial_center", 0.5)
        assert abs(light[side // 2, side // 2] - expected) < 0.01, side
