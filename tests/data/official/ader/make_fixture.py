"""Write ``fixture.npz``: two small "classes" of anomaly maps and masks on which ADer's own metric
code was run (``reference.json`` holds what it gave; ``NOTES.md`` of the research notes how).

Deterministic: numpy's PCG64 generator with a fixed seed, smoothing by an explicit numpy kernel
(no scipy, whose filters could change between releases), float32 maps, bool masks, and a zip
written with fixed timestamps, so ``python make_fixture.py`` rewrites the same bytes.
``tests/test_official_ader.py`` checks that the arrays regenerate bit for bit.

Layout (12 images of 64 x 96 pixels, two classes of 6 images, 2 normal + 4 defective each):

* ``maps``    (12, 64, 96) float32 anomaly maps
* ``masks``   (12, 64, 96) bool ground truth (True = defect pixel)
* ``labels``  (12,) bool, True where the mask has a defect pixel (ADer's image label)
* ``classes`` (12,) str, ``"alpha"`` or ``"beta"``

``alpha`` is quantised: its values are multiples of 1/40 between exactly 0 and exactly 1, so its
min-max normalisation is the identity and many pixels sit exactly on ADer's thresholds
(k * 0.05 rounded to float32): the fixture tells apart a float32 and a float64 comparison with
the threshold.  ``beta`` is continuous (PatchCore-like distances, about 0.8-3.6) with ties of
its own: a constant plateau across a defect's border and a normal image repeated exactly.
Both classes hold a false-positive blob on a normal image, a defect of two separate regions, a
defect touching the image border and a defect the map misses (its blob is offset).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

SEED = 20261207
H, W = 64, 96
HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixture.npz"


def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """White noise smoothed by a separable Gaussian kernel (reflect padding), unit-free, (H, W) float64."""
    noise = rng.standard_normal((H, W))
    radius = int(3 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(noise, radius, mode="reflect")
    rows = np.stack([np.convolve(r, kernel, mode="valid") for r in padded])
    return np.stack([np.convolve(c, kernel, mode="valid") for c in rows.T]).T


def _blob(cy: float, cx: float, sy: float, sx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _class_images(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Six (map, mask) pairs in float64, unscaled: 2 normal, then 4 defective."""
    maps, masks = [], []
    empty = np.zeros((H, W), dtype=bool)

    # 0: normal, background texture only
    maps.append(0.15 * _smooth_noise(rng, 3.0))
    masks.append(empty.copy())
    # 1: normal with a false-positive blob (no defect under it)
    maps.append(0.15 * _smooth_noise(rng, 3.0) + 0.55 * _blob(20, 70, 4, 6))
    masks.append(empty.copy())
    # 2: one elliptic defect with a matching blob
    m = _ellipse(30, 40, 8, 12)
    maps.append(0.15 * _smooth_noise(rng, 3.0) + 0.9 * _blob(30, 40, 6, 9))
    masks.append(m)
    # 3: two separate regions, a strong large one and a weak small one
    m = _ellipse(18, 22, 7, 9) | _ellipse(46, 74, 3, 4)
    maps.append(0.15 * _smooth_noise(rng, 3.0) + 1.0 * _blob(18, 22, 6, 8) + 0.35 * _blob(46, 74, 3, 3))
    masks.append(m)
    # 4: a defect touching the bottom border; a constant plateau covers its left half and beyond
    m = _ellipse(63, 48, 10, 14)
    mp = 0.15 * _smooth_noise(rng, 3.0) + 0.7 * _blob(60, 50, 7, 10)
    mp[50:64, 30:48] = 0.6
    maps.append(mp)
    masks.append(m)
    # 5: a defect the map misses: its blob sits beside the region
    m = _ellipse(32, 80, 5, 6)
    maps.append(0.15 * _smooth_noise(rng, 3.0) + 0.5 * _blob(32, 62, 5, 6))
    masks.append(m)
    return maps, masks


def build() -> dict[str, np.ndarray]:
    """The fixture's arrays (see the module docstring)."""
    rng = np.random.default_rng(SEED)

    # alpha: scaled to [0, 1] and quantised to multiples of 1/40, exactly 0 and 1 present
    a_maps, a_masks = _class_images(rng)
    stack = np.stack(a_maps)
    stack = (stack - stack.min()) / (stack.max() - stack.min())
    alpha = (np.round(stack * 40.0) / 40.0).astype(np.float32)

    # beta: continuous, PatchCore-like distances (0.8 + 2.8 * unit scale), float32
    b_maps, b_masks = _class_images(rng)
    stack = np.stack(b_maps)
    stack = (stack - stack.min()) / (stack.max() - stack.min())
    beta = (0.8 + 2.8 * stack).astype(np.float32)
    beta[1] = beta[0]  # an exact copy of the first normal image: every value tied across two images

    maps = np.concatenate([alpha, beta])
    masks = np.concatenate([np.stack(a_masks), np.stack(b_masks)])
    return {
        "maps": maps,
        "masks": masks,
        "labels": masks.any(axis=(1, 2)),
        "classes": np.array(["alpha"] * 6 + ["beta"] * 6),
    }


def save(arrays: dict[str, np.ndarray], path: Path = FIXTURE) -> None:
    """An .npz numpy reads (one .npy per array), with fixed zip timestamps: the same arrays, the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def load(path: Path = FIXTURE) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


if __name__ == "__main__":
    save(build())
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")
