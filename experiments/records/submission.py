"""MVTec AD 2's private test sets, scored and written in its evaluation server's format.

``test_private`` and ``test_private_mixed`` ship without ground truth; the benchmark scores them on
its server.  Each map-making method's clean model (the ``clean`` scenario's) scores them here, and
each anomaly map is written as the server's upload checker requires (MVTec's
``check_and_prepare_data_for_upload.py``, read in copies of ``MVTecAD2_public_code_utils``):
``<out>/submission/<method>/anomaly_images/<object>/<set>/<stem>.tiff``, one single-channel float16
TIFF per image, named after the image (``000_regular.tiff``, ``000_mixed.tiff``).  Not verified here:
whether the server needs the maps at the image's resolution (the checker does not test the shape);
they are written at it, upsampled bilinearly from the model's map.  The optional thresholded maps
(``anomaly_images_thresholded``) are not written: the study has no pixel threshold.  No metric is
claimed for these sets.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from ad_core.data.io import atomic_write_bytes, image_size
from experiments.records.artifacts import prune

log = logging.getLogger("ad-repro")
FOLDER = "submission"


def write_map_tiff(path: Path, anomaly_map: np.ndarray) -> None:
    """One (H, W) map as a single-channel float16 TIFF, atomically."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(anomaly_map, dtype=np.float16))
    atomic_write_bytes(path, buffer.getvalue())


def to_image_size(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The model's (S, S) map bilinearly resized to the image's (H, W) (the preprocessing resized the whole image)."""
    import torch

    t = torch.from_numpy(np.asarray(anomaly_map, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


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
    written = []
    for method in run.config.methods:
        for category, prepared in run.prepared.items():
            for set_name, samples in prepared.clean.unlabelled.items():
                fitted = run.fitted(run.work.uses[("submission", method, None, category)])
                _, maps = fitted.model.score(run.store.batches(samples))
                if maps is None:
                    break  # an image-level method (DN2) makes no maps to submit
                folder = run.out / FOLDER / method / "anomaly_images" / category / set_name
                for sample, m in zip(samples, maps):
                    path = folder / f"{Path(sample.relpath).stem}.tiff"
                    write_map_tiff(path, to_image_size(m, image_size(sample.path)))
                    written.append(path)
    prune(run.out / FOLDER, set(written), "submission map(s)")
    if written:
        log.info("submission: %d anomaly maps of the private test sets in %s (the server's format; no metric is "
                 "claimed for them)", len(written), run.out / FOLDER)
    return written
