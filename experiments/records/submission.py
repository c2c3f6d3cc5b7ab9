"""MVTec AD 2's private test sets, scored and written in its evaluation server's format.

``test_private`` and ``test_private_mixed`` ship without ground truth; the benchmark scores them on
its server.  Each map-making method's clean model (the ``clean`` scenario's) scores them here, and
each anomaly map is written as the server's upload checker requires (MVTec's
``check_and_prepare_data_for_upload.py``, read in copies of ``MVTecAD2_public_code_utils``):
``<out>/submission/<method>/anomaly_images/<object>/<set>/<stem>.tiff``, one single-channel float16
TIFF per image, named after the image (``000_regular.tiff``, ``000_mixed.tiff``).  Not verified here:
whether the server needs the maps at the image's resolution (the checker does not test the shape);
they are written at it, upsampled bilinearly from the model's map.  The optional thresholded maps
(``anomaly_images_thresholded``) are not written.  No metric is claimed for these sets.

float16 keeps 11 significant bits: a raw PatchCore distance near 2.3 lies on a grid of 2^-9 ~ 0.002,
so neighbouring scores merge into ties and the ranking the server's AU-PRO reads loses order.  Each map
is therefore written through ``MapTransform``, a documented strictly increasing affine map, before the
cast: ``written = (s - tau) / sd`` with ``tau = mean + 3 sd`` of all pixel scores of the object's
``validation/good`` maps (at image size, float64, population sd: the baseline threshold MVTec's checker
names for SegF1).  Written values are "validation standard deviations above tau": tau is 0, so a pixel
is anomalous under that rule iff its written value is > 0, exactly (the cast keeps every sign:
``MapTransform.to_float16``).  The transform and tau of every method and object are recorded in
``<out>/submission/transform.json`` (beside the checker's folders, which must hold nothing else).
Why this one: float16's grid is finest near 0 and coarsens in proportion to |x|, so centring on tau
spends the resolution on the scores that decide SegF1 and the low-FPR end of the PRO curve; dividing by
sd makes the values unit-free, far from float16's overflow (65504 sd) and subnormal (6e-5 sd) ranges;
being affine, the mean + 3 sd rule applied to the written validation maps gives 0 again.  Measured in
docs/official_evaluation.md and tests/test_official_maps.py.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ad_core.data.io import atomic_write_bytes, image_size, write_json
from ad_core.data.samples import CategoryFiles
from ad_core.thresholds import check_scores
from experiments.records.artifacts import prune

log = logging.getLogger("ad-repro")
FOLDER = "submission"
TRANSFORM_FILE = "transform.json"
SIGMAS = 3.0  # tau = mean + 3 sd of the validation pixels: the baseline MVTec's upload checker names
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
FLOAT16_TINY = np.float16(2.0**-24)  # the smallest positive float16 (a subnormal)


def write_map_tiff(path: Path, anomaly_map: np.ndarray, dtype: type = np.float16) -> None:
    """One (H, W) map as a single-channel TIFF of ``dtype`` (float16: the server's), atomically."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(anomaly_map, dtype=dtype))
    atomic_write_bytes(path, buffer.getvalue())


def to_image_size(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The model's (S, S) map bilinearly resized to the image's (H, W) (the preprocessing resized the whole image)."""
    import torch

    t = torch.from_numpy(np.array(anomaly_map, dtype=np.float32))[None, None]  # a copy: cached maps are read-only
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def pixel_moments(maps: Iterable[np.ndarray]) -> tuple[int, float, float]:
    """(pixels, mean, population sd) of all pixels of ``maps`` pooled, in float64, one map at a time (Chan et
    al.'s pairwise update: equal to ``np.mean`` / ``np.std`` of the concatenation up to rounding, without it)."""
    n, mean, m2 = 0, 0.0, 0.0
    for m in maps:
        a = check_scores(np.asarray(m, dtype=np.float64), "validation maps")
        if a.size == 0:
            continue
        k, mu = a.size, float(a.mean())
        q = float(np.square(a - mu).sum())
        delta, total = mu - mean, n + k
        mean += delta * k / total
        m2 += q + delta * delta * n * k / total
        n = total
    if n == 0:
        raise ValueError("validation maps: no pixel (the threshold needs normal validation maps)")
    return n, mean, math.sqrt(m2 / n)


@dataclass(frozen=True)
class MapTransform:
    """``written = (s - tau) / scale``, strictly increasing, then cast to float16 (``to_float16``).

    ``tau = mean + 3 sd`` of the validation pixel scores, ``scale = sd`` (1 where the validation maps are
    constant, sd 0).  A score s maps to its distance above tau in validation standard deviations; tau
    becomes 0 and s is anomalous under SegF1's baseline rule ("s > tau") iff its written value is > 0."""

    mean: float
    sd: float
    n_images: int
    n_pixels: int

    @property
    def tau(self) -> float:
        return self.mean + SIGMAS * self.sd

    @property
    def scale(self) -> float:
        return self.sd if self.sd > 0 else 1.0

    def apply(self, anomaly_map: np.ndarray) -> np.ndarray:
        """The transformed scores in float64 (before the cast)."""
        return (np.asarray(anomaly_map, dtype=np.float64) - self.tau) / self.scale

    def to_float16(self, anomaly_map: np.ndarray) -> np.ndarray:
        """The map as written: transformed, clipped to float16's finite range (+-65504: 65504 sd from tau), cast
        (round to nearest), and a nonzero value that rounded to 0 set to +-2^-24, so the sign of every written
        value is the sign of s - tau.  Non-decreasing in s: the cast merges neighbours into ties, never swaps two."""
        s = np.asarray(anomaly_map, dtype=np.float64)
        check_scores(s, "anomaly map")
        above = s - self.tau  # exact sign: a difference of two distinct floats is never 0
        half = np.clip(above / self.scale, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
        half[(half == 0) & (above > 0)] = FLOAT16_TINY
        half[(half == 0) & (above < 0)] = -FLOAT16_TINY
        return half

    def to_json(self) -> dict[str, object]:
        return {"validation_images": self.n_images, "validation_pixels": self.n_pixels, "mean": self.mean,
                "sd": self.sd, "tau": self.tau, "scale": self.scale, "tau_written": 0.0}


TRANSFORM_RULE = {
    "written": "float16((s - tau) / scale), clipped to +-65504; a nonzero value that rounds to 0 written as +-2^-24",
    "tau": "mean + 3 sd (population, float64) of all pixel scores of the object's validation/good maps at image "
           "size: the SegF1 baseline of MVTec's upload checker",
    "scale": "sd (1 where sd is 0)",
    "segf1": "a pixel is anomalous iff s > tau, iff its written value > tau_written = 0",
    "source": "experiments/records/submission.py MapTransform; docs/official_evaluation.md",
}


def map_transform(run, fitted, category: str, files: CategoryFiles) -> MapTransform:
    """The float16 transform of ``fitted``'s maps of ``category``, from its validation normals' maps at image
    size (the official ``validation/good`` set, else the split's validation normals); memoised on the run."""
    key = (fitted.name, category)
    if key not in run.map_transforms:
        samples = files.val_good or [s for s in run.samples(category, "clean", "val") if s.label == 0]
        _, maps = fitted.model.score(run.store.batches(samples))
        n, mean, sd = pixel_moments(to_image_size(m, image_size(s.path)) for s, m in zip(samples, maps))
        run.map_transforms[key] = MapTransform(mean, sd, len(samples), n)
    return run.map_transforms[key]


def write_transforms(path: Path, used: dict[str, dict[str, MapTransform]]) -> None:
    """The transform record: the rule, then per method and object its tau and scale."""
    write_json(path, {"format": 1, "rule": TRANSFORM_RULE,
                      "methods": {m: {c: t.to_json() for c, t in per.items()} for m, per in used.items()}})


def write_submission(run) -> list[Path]:
    """Score every unlabelled set of the run's categories with each map-making method's clean model and write
    the maps (``StudyRun``: experiments.execution.runner); the written files, [] where no category has such a set."""
    if not any(p.clean.unlabelled for p in run.prepared.values()):
        prune(run.out / FOLDER, set(), "submission map(s)")
        return []
    if run.config.resize:
        log.warning("submission: not written: with --resize the maps cover a centre crop, not the whole image the "
                    "server scores")
        prune(run.out / FOLDER, set(), "submission map(s)")
        return []
    written: list[Path] = []
    used: dict[str, dict[str, MapTransform]] = {}
    for method in run.config.methods:
        for category, prepared in run.prepared.items():
            for set_name, samples in prepared.clean.unlabelled.items():
                fitted = run.fitted(run.work.uses[("submission", method, None, category)])
                _, maps = fitted.model.score(run.store.batches(samples))
                if maps is None:
                    break  # an image-level method (DN2) makes no maps to submit
                transform = used.setdefault(method, {})[category] = map_transform(run, fitted, category,
                                                                                   prepared.clean)
                folder = run.out / FOLDER / method / "anomaly_images" / category / set_name
                for sample, m in zip(samples, maps):
                    path = folder / f"{Path(sample.relpath).stem}.tiff"
                    write_map_tiff(path, transform.to_float16(to_image_size(m, image_size(sample.path))))
                    written.append(path)
    if written:
        write_transforms(run.out / FOLDER / TRANSFORM_FILE, used)
        written.append(run.out / FOLDER / TRANSFORM_FILE)
    prune(run.out / FOLDER, set(written), "submission map(s)")
    if written:
        log.info("submission: %d anomaly maps of the private test sets in %s (the server's format, written as "
                 "(s - tau) / sd before the float16 cast, tau and sd in %s; no metric is claimed for them)",
                 len(written) - 1, run.out / FOLDER, TRANSFORM_FILE)
    return written
