"""Writes the MVTec LOCO AD fixture for tests/test_official_loco.py (deterministic; run from anywhere).

    python tests/data/official/loco/make_fixture.py

What it writes, next to this file, in the layout MVTec's ``mvtec_loco_ad_evaluation`` scripts read
(notes: docs/official_measures.md; the committed files are the fixture, this script how they came):

  mvtec_loco/pushpins/defects_config.json        5 defect types: 2 logical, 3 structural; saturation
                                                 thresholds absolute (int pixels) and relative (float)
  mvtec_loco/pushpins/ground_truth/<kind>/<NNN>/<KKK>.png
                                                 one 8-bit PNG per defect region ("channel"): 0 outside,
                                                 the defect type's pixel value inside; several per image,
                                                 overlapping in two images, one channel of two blobs
  anomaly_maps/pushpins/test/<kind>/<NNN>.tiff   float32 anomaly maps (zlib), H x W = 100 x 170 (pushpins'
                                                 1000 x 1700 at 1/10), for good (5), logical_anomalies (4)
                                                 and structural_anomalies (4); scores are multiples of
                                                 2**-12, so many pixels tie, within and across images

The dataset's test images are left out: the official script reads only the ground truth, the defects
config and the anomaly maps.  The object is called "pushpins" because the script accepts only the five
LOCO object names.  numpy's Generator(PCG64) seeded with SEED, scipy's gaussian_filter, PIL and tifffile.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.ndimage import label as label_regions

SEED = 20261207
H, W = 100, 170
QUANTUM = 2.0**-12  # map values are multiples of this: ties
HERE = Path(__file__).resolve().parent
OBJECT = "pushpins"

# name, pixel value, saturation threshold, relative?  (absolute: int pixels; relative: float fraction of the area)
DEFECTS = [
    ("missing_pushpin", 255, 300, False),
    ("additional_pushpin", 254, 60, False),
    ("front_bent", 253, 1.0, True),
    ("color", 252, 0.35, True),
    ("broken", 251, 0.6, True),
]
VALUE = {name: value for name, value, _, _ in DEFECTS}

# Each image: list of channels; a channel is (defect name, [blob specs]); a blob spec is
# (centre y, centre x, radius y, radius x, angle in degrees, roughness).  Each channel has
# a detector response: (amplitude, shift y, shift x, shrink) -- amplitude 0: missed.
LOGICAL = [
    # a missing pin (large disc) and a tiny extra pin (area below its absolute threshold 60)
    [("missing_pushpin", [(30, 40, 11, 11, 0, 0.15)], (3.0, 2, 3, 0.8)),
     ("additional_pushpin", [(75, 130, 2.5, 3, 20, 0.1)], (2.5, 0, 0, 1.0))],
    # two missing pins whose regions overlap
    [("missing_pushpin", [(50, 80, 12, 12, 0, 0.2)], (1.6, -3, 4, 0.9)),
     ("missing_pushpin", [(58, 95, 10, 13, 30, 0.2)], (0.0, 0, 0, 1.0))],
    # one channel of two separate blobs (two extra pins annotated as one defect)
    [("additional_pushpin", [(20, 30, 5, 5, 0, 0.1), (80, 140, 6, 4, 45, 0.1)], (2.2, 1, -1, 0.7))],
    # three channels of two types, one of them missed
    [("missing_pushpin", [(25, 120, 13, 12, 10, 0.25)], (1.2, 0, 0, 0.6)),
     ("additional_pushpin", [(70, 40, 4, 6, -30, 0.1)], (0.0, 0, 0, 1.0)),
     ("additional_pushpin", [(80, 90, 6, 5, 0, 0.1)], (3.5, 0, 1, 1.1))],
]
STRUCTURAL = [
    # an elongated bent pin
    [("front_bent", [(50, 85, 4, 22, 35, 0.2)], (2.8, 0, 0, 0.9))],
    # a large colour defect with a small bent region overlapping it
    [("color", [(45, 60, 20, 28, -10, 0.35)], (1.4, 4, -5, 0.7)),
     ("front_bent", [(52, 72, 3, 9, 60, 0.1)], (2.0, 0, 0, 1.0))],
    # a tiny colour defect (~12 px: saturation int(0.35 * area))
    [("color", [(30, 140, 1.8, 2.2, 0, 0.05)], (1.8, 0, 0, 1.3))],
    # a large broken region and a small bent pin
    [("broken", [(60, 100, 25, 35, 15, 0.45)], (1.0, -6, 8, 0.8)),
     ("front_bent", [(15, 25, 3, 7, 0, 0.1)], (0.9, 1, 1, 1.0))],
]
N_GOOD = 5


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """(H, W) Gaussian noise low-passed with ``sigma`` pixels, unit standard deviation."""
    z = gaussian_filter(rng.normal(size=(H, W)), sigma)
    return z / z.std()


def blob(rng: np.random.Generator, cy: float, cx: float, ry: float, rx: float, angle: float,
         rough: float) -> np.ndarray:
    """A rough ellipse, one 8-connected component (the one at its centre), bool (H, W)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    a = np.deg2rad(angle)
    dy, dx = yy - cy, xx - cx
    u, v = dy * np.cos(a) - dx * np.sin(a), dy * np.sin(a) + dx * np.cos(a)
    inside = (u / ry) ** 2 + (v / rx) ** 2 + rough * smooth_noise(rng, 2.0) < 1.0
    inside[int(round(cy)), int(round(cx))] = True
    labels, _ = label_regions(inside, structure=np.ones((3, 3)))
    return labels == labels[int(round(cy)), int(round(cx))]


def response(mask: np.ndarray, amplitude: float, sy: int, sx: int, shrink: float) -> np.ndarray:
    """What a detector adds to the logit for one region: the mask moved by (sy, sx), grown or shrunk
    about its centroid by ``shrink``, blurred, peak ``amplitude``."""
    if amplitude == 0:
        return np.zeros((H, W))
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[0:H, 0:W]
    src_y = np.clip(np.round(cy + (yy - cy - sy) / shrink).astype(int), 0, H - 1)
    src_x = np.clip(np.round(cx + (xx - cx - sx) / shrink).astype(int), 0, W - 1)
    moved = mask[src_y, src_x].astype(np.float64)
    r = gaussian_filter(moved, 1.5)
    return amplitude * r / max(r.max(), 1e-12)


def anomaly_map(rng: np.random.Generator, responses: list[np.ndarray], false_positives: int) -> np.ndarray:
    """float32 (H, W) in (0, 1), multiples of QUANTUM: a sigmoid of smooth background noise plus responses."""
    logit = -2.2 + 0.55 * smooth_noise(rng, 3.0) + 0.15 * rng.normal(size=(H, W))
    for r in responses:
        logit += r
    for _ in range(false_positives):  # blobs the detector finds where nothing is wrong
        cy, cx = rng.uniform(10, H - 10), rng.uniform(10, W - 10)
        fp = blob(rng, cy, cx, rng.uniform(2, 7), rng.uniform(2, 9), rng.uniform(0, 180), 0.1)
        logit += response(fp, rng.uniform(0.8, 2.4), 0, 0, 1.0)
    scores = 1.0 / (1.0 + np.exp(-logit))
    return (np.round(scores / QUANTUM) * QUANTUM).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(SEED)
    data = HERE / "mvtec_loco" / OBJECT
    maps_dir = HERE / "anomaly_maps" / OBJECT / "test"
    for old in (HERE / "mvtec_loco", HERE / "anomaly_maps"):
        shutil.rmtree(old, ignore_errors=True)
    data.mkdir(parents=True)
    config = [{"defect_name": n, "pixel_value": v, "saturation_threshold": t, "relative_saturation": r}
              for n, v, t, r in DEFECTS]
    (data / "defects_config.json").write_text(json.dumps(config, indent=4) + "\n")

    all_maps = []
    for kind, images in (("logical_anomalies", LOGICAL), ("structural_anomalies", STRUCTURAL)):
        for i, channels in enumerate(images):
            gt_dir = data / "ground_truth" / kind / f"{i:03d}"
            gt_dir.mkdir(parents=True)
            responses = []
            for k, (name, blobs, (amp, sy, sx, shrink)) in enumerate(channels):
                mask = np.zeros((H, W), dtype=bool)
                for spec in blobs:
                    mask |= blob(rng, *spec)
                channel = np.where(mask, VALUE[name], 0).astype(np.uint8)
                Image.fromarray(channel).save(gt_dir / f"{k:03d}.png")
                responses.append(response(mask, amp, sy, sx, shrink))
            m = anomaly_map(rng, responses, false_positives=int(rng.integers(0, 2)))
            all_maps.append(m)
            (maps_dir / kind).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(maps_dir / kind / f"{i:03d}.tiff", m, compression="zlib")
    for i in range(N_GOOD):
        m = anomaly_map(rng, [], false_positives=int(rng.integers(0, 3)))
        all_maps.append(m)
        (maps_dir / "good").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(maps_dir / "good" / f"{i:03d}.tiff", m, compression="zlib")

    # The official script's first thresholds are 48 scores at equal ranks of all sorted scores; two of them
    # equal would stop it (its refinement refuses duplicate thresholds), so no tie may span a rank step.
    scores = np.sort(np.concatenate([m.ravel() for m in all_maps]))
    picked = scores[np.linspace(0, scores.size - 1, num=50, dtype=int)[1:-1]]
    assert np.unique(picked).size == picked.size, "tie spans two initial thresholds"
    # image scores (maxima) distinct: the official image AUROC orders tied images in its own way
    maxima = [float(m.max()) for m in all_maps]
    assert len(set(maxima)) == len(maxima), "two images share their maximum"


if __name__ == "__main__":
    main()
