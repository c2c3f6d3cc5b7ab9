"""The embedded default dataset: a small MVTec-layout dataset made from real photographs.

The raw material ships inside scikit-image's wheel (no download): ``coffee`` (colour
object: a cup on a saucer, seen from above), ``brick`` (grayscale texture) and
``immunohistochemistry`` (colour texture, category ``tissue``).  Normal images vary like
real acquisitions (crop position, small pose changes for the object, exposure, sensor
noise); anomalous images carry one of five defect types painted with an exact mask:
scratch, contamination (a foreign patch from another photograph), stain, hole (missing
material) and colour (a local colour / intensity shift).  Everything is drawn from
generators seeded by (seed, category, file name), so the PNGs are identical on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation, gaussian_filter
from skimage import data as skdata
from skimage.draw import ellipse, line, polygon
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ad_core import SEED
from ad_core.data.io import folder_digests, write_image, write_json
from ad_core.data.records import intact_copy
from ad_core.seeding import rng_for

DEFECTS = ("scratch", "contamination", "stain", "hole", "color")
MARKER = "embedded_dataset.json"


@dataclass(frozen=True)
class EmbeddedSpec:
    """Sizes of the generated dataset (per category)."""

    n_train_good: int = 50
    n_test_good: int = 12
    n_per_defect: int = 4
    size: int = 256
    seed: int = SEED


# category -> (source loader, kind); grayscale follows the source image
SOURCES = {
    "coffee": (skdata.coffee, "object"),
    "brick": (skdata.brick, "texture"),
    "tissue": (skdata.immunohistochemistry, "texture"),
}
CATEGORIES = tuple(SOURCES)


def _to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    out = F.resize(t, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return out[0].numpy() if img.ndim == 2 else out.permute(1, 2, 0).numpy()


def _normal_image(category: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One defect-free image, float32 in [0, 1], (size, size) or (size, size, 3)."""
    loader, kind = SOURCES[category]
    return normal_from_source(_to_float(loader()), kind, rng, size)


def normal_from_source(src: np.ndarray, kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One defect-free acquisition of the float [0, 1] photograph ``src``: the coffee cup's pose jitter
    (``kind`` "object") or a random crop of 280-339 px (at most the photograph's side), flipped; then
    exposure and sensor noise.  float32 (size, size[, 3])."""
    if kind == "object":
        # cup centred near (x=290, y=200) in the 400x600 photo: pose jitter, then crop
        t = torch.from_numpy(src).permute(2, 0, 1)
        t = F.affine(
            t, angle=float(rng.uniform(-8, 8)),
            translate=[float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))],
            scale=float(rng.uniform(0.97, 1.03)), shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR, center=[290.0, 200.0],
        )
        img = t.permute(1, 2, 0).numpy()[5:395, 95:485]
    else:
        crop = min(int(rng.integers(280, 340)), min(src.shape[:2]) - 1)
        y0, x0 = rng.integers(0, src.shape[0] - crop), rng.integers(0, src.shape[1] - crop)
        img = src[y0:y0 + crop, x0:x0 + crop]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if rng.random() < 0.5:
            img = img[::-1]
    img = _resize(img.astype(np.float32), size)
    img = img * rng.uniform(0.93, 1.07) + rng.uniform(-0.03, 0.03)  # exposure
    img = img + rng.normal(0, 0.01, img.shape)  # sensor noise
    return np.clip(img, 0, 1).astype(np.float32)


def _defect_centre(kind: str, rng: np.random.Generator, size: int) -> tuple[int, int]:
    if kind == "object":  # on the cup / saucer, not on the table
        r, a = size * 0.3 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        return int(size / 2 + r * np.sin(a)), int(size / 2 + r * np.cos(a))
    lo, hi = int(0.15 * size), int(0.85 * size)
    return int(rng.integers(lo, hi)), int(rng.integers(lo, hi))


def _blob(rng: np.random.Generator, size: int, cy: int, cx: int, radius: float) -> np.ndarray:
    """An irregular filled shape: a smoothed random field thresholded inside an ellipse."""
    field = gaussian_filter(rng.normal(size=(size, size)), sigma=radius / 3)
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot((yy - cy) / radius, (xx - cx) / (radius * rng.uniform(0.6, 1.4)))
    return (d + 0.6 * field / (field.std() + 1e-9) * 0.5) < 1.0


def paint_defect(img: np.ndarray, defect: str, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect onto ``img``; return (image, exact bool mask)."""
    size = img.shape[0]
    gray = img.ndim == 2
    cy, cx = _defect_centre(kind, rng, size)
    mask = np.zeros((size, size), dtype=bool)
    out = img.copy()
    if defect == "scratch":
        n_seg = int(rng.integers(1, 4))
        y, x = cy, cx
        for _ in range(n_seg):
            length, ang = rng.uniform(0.08, 0.2) * size, rng.uniform(0, np.pi)
            y1 = int(np.clip(y + length * np.sin(ang), 0, size - 1))
            x1 = int(np.clip(x + length * np.cos(ang), 0, size - 1))
            rr, cc = line(y, x, y1, x1)
            mask[rr, cc] = True
            y, x = y1, x1
        mask = binary_dilation(mask, iterations=int(rng.integers(1, 3)))
        out[mask] = rng.choice([0.05, 0.95])
    elif defect == "contamination":
        src = _to_float(rng.choice([skdata.astronaut, skdata.chelsea, skdata.rocket])())
        rr, cc = ellipse(cy, cx, rng.uniform(0.04, 0.09) * size, rng.uniform(0.04, 0.09) * size,
                         shape=(size, size), rotation=rng.uniform(0, np.pi))
        mask[rr, cc] = True
        oy, ox = rng.integers(0, src.shape[0] - size), rng.integers(0, src.shape[1] - size)
        patch = src[oy:oy + size, ox:ox + size]
        out[mask] = patch.mean(axis=2)[mask] if gray else patch[mask]
    elif defect == "stain":
        mask = _blob(rng, size, cy, cx, rng.uniform(0.05, 0.1) * size)
        tint = rng.uniform(0.0, 0.35) if gray else np.array([rng.uniform(0.2, 0.45), rng.uniform(0.1, 0.3), 0.05])
        out[mask] = 0.45 * out[mask] + 0.55 * tint
    elif defect == "hole":
        n, r = int(rng.integers(5, 9)), rng.uniform(0.04, 0.08) * size
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.6, 1.0, n)
        rr, cc = polygon(cy + radii * np.sin(angles), cx + radii * np.cos(angles), shape=(size, size))
        mask[rr, cc] = True
        out[mask] = 0.04 + rng.normal(0, 0.01, out[mask].shape)
    elif defect == "color":
        rr, cc = ellipse(cy, cx, rng.uniform(0.05, 0.1) * size, rng.uniform(0.05, 0.1) * size,
                         shape=(size, size), rotation=rng.uniform(0, np.pi))
        mask[rr, cc] = True
        if gray:
            out[mask] = 1.0 - out[mask]  # local intensity inversion
        else:
            out[mask] = out[mask][:, [2, 0, 1]]  # local hue rotation
    else:
        raise ValueError(f"unknown defect type {defect!r}; known: {DEFECTS}")
    return np.clip(out, 0, 1), mask


def _save(path: Path, img: np.ndarray) -> None:
    write_image(path, (img * 255.0).round().astype(np.uint8))


def make_embedded_dataset(root: str | Path, spec: EmbeddedSpec = EmbeddedSpec(),
                          categories: tuple[str, ...] = CATEGORIES, stamp: object = None) -> Path:
    """Write the dataset under ``root`` in MVTec layout and return ``root``.

    A complete earlier copy with the same spec and ``stamp`` (the caller's fingerprint of
    the generating code) is kept (the marker file is written last).
    """
    root = Path(root)
    marker = root / MARKER
    record = {"spec": spec.__dict__, "categories": list(categories), "defects": list(DEFECTS), "stamp": stamp}
    if intact_copy(root, marker, lambda stored: {k: v for k, v in stored.items() if k != "files"} == record,
                   "embedded dataset"):
        return root
    for category in categories:
        if category not in SOURCES:
            raise ValueError(f"unknown embedded category {category!r}; known: {CATEGORIES}")
        kind = SOURCES[category][1]
        cat = root / category
        jobs = [("train/good", i) for i in range(spec.n_train_good)]
        jobs += [("test/good", i) for i in range(spec.n_test_good)]
        jobs += [(f"test/{d}", i) for d in DEFECTS for i in range(spec.n_per_defect)]
        for folder, i in jobs:
            name = f"{i:03d}.png"
            rng = rng_for(spec.seed, "embedded", category, folder, name)
            img = _normal_image(category, rng, spec.size)
            defect = folder.split("/")[1]
            if defect != "good":
                img, mask = paint_defect(img, defect, kind, rng)
                write_image(cat / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
            _save(cat / folder / name, img)
    write_json(marker, {**record, "files": folder_digests(root)})  # what a reuse is checked by
    return root
