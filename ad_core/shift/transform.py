"""MVTec-Shift as a pure function of (image, mask, parameters) (docs/protocol.md §3).

``sample_shift_params(rng)`` draws every parameter in a fixed order (all draws happen
whether or not a p=0.5 effect fires, so one effect never changes another's value);
``apply_shift`` is then deterministic: geometric (image bilinear, mask nearest, same
matrix), brightness -> contrast -> saturation (fixed order, unlike ColorJitter's random
one, for reproducibility), blur, noise, illumination.  The region the affine warp uncovers
is filled with 0 (black image, normal mask), as torchvision's affine does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

ROTATION_DEG = 10.0
SCALE_RANGE = (0.9, 1.0)
TRANSLATE_FRACTION = 0.10
JITTER_RANGE = (0.7, 1.3)
BLUR_P, BLUR_KERNELS, BLUR_SIGMA = 0.5, (3, 5), (0.1, 2.0)
NOISE_P, NOISE_SIGMA = 0.5, (0.01, 0.05)
ILLUM_P, ILLUM_STRENGTH = 0.5, (0.4, 0.7)
ILLUM_KINDS = ("left", "right", "top", "bottom", "radial_center", "radial_edge")
# Smoothing sigma: 80 px at MVTec's 1024-px side, scaled with the image side.
ILLUM_SMOOTH_FRACTION = 80.0 / 1024.0
# The illumination map is smooth, so it is built on a grid of at most this side and
# upsampled bilinearly: a 1024-px Gaussian filter with sigma 80 costs seconds per image.
_ILLUM_GRID = 128


@dataclass(frozen=True)
class ShiftParams:
    """Every sampled value of one image's shift; ``asdict`` is what the JSON log holds."""

    angle: float  # degrees, counter-clockwise
    scale: float
    translate: tuple[float, float]  # (x, y) as fractions of width / height
    brightness: float
    contrast: float
    saturation: float
    blur: bool
    blur_kernel: int
    blur_sigma: float
    noise: bool
    noise_sigma: float  # on [0, 1] intensities
    noise_seed: int
    illumination: str | None  # one of ILLUM_KINDS, or None
    illumination_strength: float

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["translate"] = list(self.translate)
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> ShiftParams:
        return cls(**{**d, "translate": tuple(d["translate"])})  # type: ignore[arg-type]

    def geometric_only(self) -> ShiftParams:
        """The same warp with every photometric/illumination effect switched off."""
        return ShiftParams(
            self.angle, self.scale, self.translate, 1.0, 1.0, 1.0, False, self.blur_kernel,
            self.blur_sigma, False, self.noise_sigma, self.noise_seed, None,
            self.illumination_strength,
        )


def sample_shift_params(rng: np.random.Generator) -> ShiftParams:
    """Draw one image's parameters from the §3 distributions."""
    angle = rng.uniform(-ROTATION_DEG, ROTATION_DEG)
    scale = rng.uniform(*SCALE_RANGE)
    tx, ty = rng.uniform(-TRANSLATE_FRACTION, TRANSLATE_FRACTION, size=2)
    brightness, contrast, saturation = rng.uniform(*JITTER_RANGE, size=3)
    blur = rng.random() < BLUR_P
    kernel = int(rng.choice(BLUR_KERNELS))
    blur_sigma = rng.uniform(*BLUR_SIGMA)
    noise = rng.random() < NOISE_P
    noise_sigma = rng.uniform(*NOISE_SIGMA)
    noise_seed = int(rng.integers(0, 2**31 - 1))
    illum = rng.random() < ILLUM_P
    kind = ILLUM_KINDS[int(rng.integers(len(ILLUM_KINDS)))]
    strength = rng.uniform(*ILLUM_STRENGTH)
    return ShiftParams(
        float(angle), float(scale), (float(tx), float(ty)), float(brightness),
        float(contrast), float(saturation), bool(blur), kernel, float(blur_sigma),
        bool(noise), float(noise_sigma), noise_seed, kind if illum else None, float(strength),
    )


def illumination_map(height: int, width: int, kind: str, strength: float) -> np.ndarray:
    """Multiplicative light map (H, W) in [1 - strength, 1], smoothed as §3 says."""
    side = max(height, width)
    factor = min(1.0, _ILLUM_GRID / side)
    gh, gw = max(2, round(height * factor)), max(2, round(width * factor))
    yy, xx = np.meshgrid(np.linspace(0, 1, gh), np.linspace(0, 1, gw), indexing="ij")
    if kind in ("left", "right", "top", "bottom"):
        # distance from the darkened edge: 0 there, 1 at the opposite edge
        ramp = {"left": xx, "right": 1 - xx, "top": yy, "bottom": 1 - yy}[kind]
        light = 1.0 - strength * (1.0 - ramp)
    else:
        r = np.hypot(xx - 0.5, yy - 0.5) / np.hypot(0.5, 0.5)  # 0 at centre, 1 in corners
        light = 1.0 - strength * (r if kind == "radial_center" else 1.0 - r)
    light = gaussian_filter(light, sigma=ILLUM_SMOOTH_FRACTION * side * factor, mode="nearest")
    up = F.resize(torch.from_numpy(light)[None].float(), [height, width],
                  interpolation=InterpolationMode.BILINEAR, antialias=False)
    return up[0].numpy()


def _warp(t: torch.Tensor, p: ShiftParams, interpolation: InterpolationMode) -> torch.Tensor:
    h, w = t.shape[-2:]
    return F.affine(
        t, angle=p.angle, translate=[p.translate[0] * w, p.translate[1] * h], scale=p.scale,
        shear=[0.0, 0.0], interpolation=interpolation, fill=0,
    )


def _adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_contrast`` on a float image in [0, 1] (blend with the mean of its
    grayscale), the mean summed in float64 by numpy in a fixed order.

    torch's parallel mean reorders the float32 sum with the thread count and the CPU's vector
    width, which moved single uint8 pixels of the shifted copy between ``--threads 1`` and 2 (13 of
    the embedded set's 477 shifted images), and so the shifted scenarios' numbers between machines.
    """
    gray = F.rgb_to_grayscale(x) if x.shape[-3] == 3 else x
    mean = torch.tensor(np.mean(gray.numpy(), dtype=np.float64), dtype=x.dtype)
    return x.mul(factor).add_(mean, alpha=1.0 - factor).clamp_(0.0, 1.0)


def apply_shift(
    image: np.ndarray, mask: np.ndarray | None, params: ShiftParams
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shift one image (uint8 (H, W) or (H, W, 3)) and its bool mask (H, W) or None.

    Returns arrays of the input shapes and dtypes; the mask stays binary.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"apply_shift expects a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    gray = image.ndim == 2
    t = torch.tensor(image)  # a copy: decoded PIL arrays are read-only
    t = t[None] if gray else t.permute(2, 0, 1)
    t = _warp(t, params, InterpolationMode.BILINEAR)
    x = t.float() / 255.0
    x = F.adjust_brightness(x, params.brightness)
    x = _adjust_contrast(x, params.contrast)
    if not gray:
        x = F.adjust_saturation(x, params.saturation)
    if params.blur:
        k = params.blur_kernel
        x = F.gaussian_blur(x, [k, k], [params.blur_sigma, params.blur_sigma])
    if params.noise:
        g = np.random.default_rng(params.noise_seed)
        x = x + torch.from_numpy(g.normal(0.0, params.noise_sigma, size=x.shape).astype(np.float32))
    if params.illumination is not None:
        h, w = x.shape[-2:]
        x = x * torch.from_numpy(illumination_map(h, w, params.illumination, params.illumination_strength))
    out = (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
    out_np = out[0].numpy() if gray else out.permute(1, 2, 0).numpy()
    if mask is None:
        return np.ascontiguousarray(out_np), None
    m = _warp(torch.from_numpy(mask.astype(np.uint8))[None], params, InterpolationMode.NEAREST)
    return np.ascontiguousarray(out_np), m[0].numpy() > 0
