"""Write the small MVTec AD 2 fixture that tests/test_official_mvtec_ad2.py holds against MVTec's own evaluation.

Run from anywhere (deterministic: numpy seeded, no clock, no platform-dependent call):

    python tests/data/official/mvtec_ad2/make_fixture.py [OUT]     # OUT defaults to this file's folder

What it writes under OUT (about 1 MB; every map in the format MVTec's tools read):

    dataset/can/train/good/<stem>.png                      2 images (the project's MVTec AD 2 reader wants train/good)
    dataset/can/validation/good/<stem>.png                 4 normal validation images
    dataset/can/test_public/good/<stem>.png                4 normal test images
    dataset/can/test_public/bad/<stem>.png                 6 anomalous test images
    dataset/can/test_public/ground_truth/bad/<stem>_mask.png   their masks, 8-bit 0/255 (255 = defect)
    experiment/anomaly_images/can/test_public/{good,bad}/<stem>.tiff   one single-channel float16 TIFF per image
    experiment/anomaly_images/can/validation/good/<stem>.tiff          maps of the validation normals (SegF1's tau)
    experiment/anomaly_images_thresholded/can/test_public/{good,bad}/<stem>.png   maps > tau as 0/255 PNGs

The image size is 128 x 279 (H x W): MVTec AD 2's `can` images (1024 x 2232) at 1/8 scale.  The images are
plain gradients (no metric reads them; the evaluation script lists them to find the maps); the maps and masks
are built to look like a real method's output on real defects:

* ground-truth regions of every size in one set: single pixels, a 1-pixel-wide diagonal scratch (one region
  only under 8-connectivity), two squares touching at a corner (likewise one region), blobs, a large irregular
  union of ellipses, a defect cut by the image border, two blobs 1 pixel apart (two regions);
* maps: smooth background noise; per region a blurred response of varied strength, sometimes shifted (imperfect
  localisation), one region missed; false-positive blobs on normal and anomalous images; one map made at 1/8
  resolution and upsampled by nearest neighbour (8 x 8 blocks of equal values, like a patch-level method); a
  zero-padded border (a run of exact zeros) and a saturated plateau (exact 1.0) in some maps; then the cast to
  float16 that the server's format imposes, which adds many more ties.

tau for SegF1 is MVTec's baseline rule from its upload checker (check_and_prepare_data_for_upload.py):
mean + 3 standard deviations (population, numpy's default) of all pixel scores of the validation maps, taken
here from the float16 maps as written, in float64.  The thresholded PNGs are "score > tau" (no score equals tau;
checked below).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy.ndimage import gaussian_filter, label

OBJECT = "can"
H, W = 128, 279  # can: 1024 x 2232 at 1/8
SEED = 20261207

GOOD = ("000_regular", "001_overexposed", "002_underexposed", "003_shift_1")
BAD = ("000_regular", "001_overexposed", "002_shift_2", "003_underexposed", "004_regular", "005_shift_3")
VALIDATION = ("000_regular", "001_regular", "002_regular", "003_regular")
TRAIN = ("000_regular", "001_regular")


def _ellipse(cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _masks() -> list[np.ndarray]:
    """One bool (H, W) mask per anomalous image; the regions are listed in the module docstring."""
    m = [np.zeros((H, W), bool) for _ in BAD]
    # 0: a large ellipse, a single pixel, two 2x2 squares touching only at a corner (one 8-connected region)
    m[0] |= _ellipse(60, 90, 14, 26, 0.3)
    m[0][20, 200] = True
    m[0][100:102, 230:232] = True
    m[0][102:104, 232:234] = True
    # 1: a defect cut by the right border, a medium blob, a 2 x 1 speck
    m[1] |= _ellipse(70, 276, 18, 12)
    m[1] |= _ellipse(30, 60, 6, 9)
    m[1][110, 140:142] = True
    # 2: a 1-pixel-wide diagonal scratch (8-connected only), a medium blob
    for k in range(40):
        m[2][30 + k, 100 + k] = True
    m[2] |= _ellipse(95, 210, 8, 5, 1.0)
    # 3: a large irregular blob (union of ellipses) and three specks
    m[3] |= _ellipse(64, 140, 20, 35) | _ellipse(45, 170, 12, 20, 0.8) | _ellipse(85, 115, 10, 18, -0.5)
    m[3][10, 10] = m[3][12, 250] = m[3][120, 30] = True
    # 4: one small 3 x 3 region only (weakly detected below)
    m[4][50:53, 60:63] = True
    # 5: two blobs one pixel apart (two regions)
    m[5] |= _ellipse(64, 120, 10, 10)
    m[5][54:75, 131:141] = True
    m[5][:, 130] = False
    return m


def _background(rng: np.random.Generator) -> np.ndarray:
    noise = gaussian_filter(rng.normal(size=(H, W)), sigma=3.0)
    return 0.25 + 0.6 * noise / noise.std() * 0.1


def _blob_response(region: np.ndarray, amplitude: float, shift: tuple[int, int], sigma: float) -> np.ndarray:
    moved = np.roll(region.astype(np.float64), shift, axis=(0, 1))
    r = gaussian_filter(moved, sigma=sigma)
    peak = r.max()
    return amplitude * r / peak if peak > 0 else r


def _false_positive(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    cy, cx = rng.uniform(10, H - 10), rng.uniform(10, W - 10)
    blob = _ellipse(cy, cx, rng.uniform(3, 8), rng.uniform(3, 10), rng.uniform(0, np.pi))
    return _blob_response(blob, amplitude, (0, 0), 2.0)


def build() -> dict[str, object]:
    """All arrays of the fixture: maps float16 (H, W), masks bool (H, W), tau float, thresholded uint8 0/255."""
    rng = np.random.default_rng(SEED)
    masks = _masks()

    def finish(m: np.ndarray, zero_border: bool = False, saturate: bool = False) -> np.ndarray:
        m = np.clip(m, 0.0, None)
        if zero_border:
            m[:, :6] = 0.0  # a zero-padded border: a run of exact zeros
        if saturate:
            m = np.minimum(m, 1.0)  # a saturated plateau: exact ones
        return m.astype(np.float16)

    validation = []
    for i, _ in enumerate(VALIDATION):
        m = _background(rng)
        if i % 2 == 0:
            m += _false_positive(rng, 0.25)
        validation.append(finish(m, zero_border=i == 1))

    good = []
    for i, _ in enumerate(GOOD):
        m = _background(rng) + _false_positive(rng, rng.uniform(0.3, 0.6))
        if i == 2:  # a second false alarm
            m += _false_positive(rng, 0.45)
        good.append(finish(m, zero_border=i == 0, saturate=i == 3))

    # per anomalous image, per region in label order (scipy's: by first pixel, row-major): amplitude, shift, blur
    plans = {
        0: [(0.35, (0, 0), 1.0), (0.9, (2, -3), 3.0), (0.7, (0, 1), 1.5)],  # pixel (weak), ellipse, corner pair
        1: [(0.5, (3, 3), 2.0), (1.1, (0, -2), 3.0), (0.0, (0, 0), 1.0)],  # blob, border defect, speck missed
        2: [(0.55, (1, 0), 1.2), (0.8, (0, 0), 2.5)],  # scratch, blob
        3: [(0.3, (0, 0), 1.0), (0.6, (0, 0), 1.0), (1.2, (-2, 4), 4.0), (0.2, (0, 0), 1.0)],  # 3 specks, 1 blob
        4: [(0.3, (1, 1), 1.5)],  # the 3 x 3 region, weak (and the map upsampled from 1/8)
        5: [(0.75, (0, 0), 2.0), (0.65, (0, 2), 2.0)],  # the two neighbouring blobs
    }

    bad = []
    for i, mask in enumerate(masks):
        labelled, n = label(mask, structure=np.ones((3, 3), int))  # 8-connected, as PRO defines regions
        assert n == len(plans[i]), (i, n)
        m = _background(rng)
        for k, (amp, shift, sigma) in enumerate(plans[i], start=1):
            m += _blob_response(labelled == k, amp, shift, sigma)
        if i in (1, 3):
            m += _false_positive(rng, 0.4)
        if i == 4:  # a patch-level map: made at 1/8 resolution, upsampled by nearest neighbour
            coarse = m[4::8, 4::8]
            m = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:H, :W]
            m = np.pad(m, ((0, H - m.shape[0]), (0, W - m.shape[1])), mode="edge")
        bad.append(finish(m, saturate=i == 3, zero_border=i == 5))

    val_scores = np.concatenate([v.astype(np.float64).ravel() for v in validation])
    tau = float(np.mean(val_scores) + 3.0 * np.std(val_scores))
    test_maps = good + bad
    for m in test_maps:
        assert not np.any(m.astype(np.float64) == tau), "a score equals tau: > and >= would differ"
    thresholded = [np.where(m.astype(np.float64) > tau, 255, 0).astype(np.uint8) for m in test_maps]
    return {"validation": validation, "good": good, "bad": bad, "masks": masks, "tau": tau,
            "thresholded": thresholded}


def _image(i: int) -> np.ndarray:
    """A plain RGB gradient (uint8 H x W x 3); no metric reads the images."""
    ramp = np.linspace(60 + 5 * i, 180, W, dtype=np.float64)
    rgb = np.stack([np.broadcast_to(ramp, (H, W))] * 3, axis=-1)
    return rgb.round().astype(np.uint8)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")


def _tiff(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.ascontiguousarray(array, dtype=np.float16))


def write(out: Path) -> dict[str, object]:
    out = Path(out)
    arrays = build()
    data = out / "dataset" / OBJECT
    maps = out / "experiment" / "anomaly_images" / OBJECT
    binary = out / "experiment" / "anomaly_images_thresholded" / OBJECT
    for i, stem in enumerate(TRAIN):
        _png(data / "train" / "good" / f"{stem}.png", _image(i))
    for i, stem in enumerate(VALIDATION):
        _png(data / "validation" / "good" / f"{stem}.png", _image(i))
        _tiff(maps / "validation" / "good" / f"{stem}.tiff", arrays["validation"][i])
    thresholded = iter(arrays["thresholded"])
    for i, stem in enumerate(GOOD):
        _png(data / "test_public" / "good" / f"{stem}.png", _image(i))
        _tiff(maps / "test_public" / "good" / f"{stem}.tiff", arrays["good"][i])
        _png(binary / "test_public" / "good" / f"{stem}.png", next(thresholded))
    for i, stem in enumerate(BAD):
        _png(data / "test_public" / "bad" / f"{stem}.png", _image(i))
        _png(data / "test_public" / "ground_truth" / "bad" / f"{stem}_mask.png",
             arrays["masks"][i].astype(np.uint8) * 255)
        _tiff(maps / "test_public" / "bad" / f"{stem}.tiff", arrays["bad"][i])
        _png(binary / "test_public" / "bad" / f"{stem}.png", next(thresholded))
    return arrays


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    result = write(target)
    print(f"wrote the fixture under {target} (tau = {result['tau']!r})")
