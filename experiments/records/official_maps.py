"""Anomaly maps where the benchmarks' official evaluation scripts read them (``--official-maps``).

MVTec AD's ``evaluate_experiment.py`` (MVTec's evaluation code 1.0) and MVTec LOCO AD's (2.0) read one TIFF
per test image, ``<maps>/<object>/test/<type>/<stem>.tiff``, at the size of the image and of its ground truth:
neither resizes a map (MVTec AD's stacks all maps of an object into one array beside masks read as they are;
LOCO's asserts each map's shape).  With ``--official-maps`` each map-making method's clean per-class model (the
``clean`` scenario's) scores every test image of each category -- the whole test folder, whatever the split
protocol puts in the validation part -- and writes

- ``<out>/official_maps/<method>/<category>/test/<type>/<stem>.tiff``: the model's map resized bilinearly to
  the image's size (``submission.to_image_size``), single-channel float32, the scores as the model gives them;
- on MVTec AD 2 (a layout with unscored sets), also ``<out>/official_maps/<method>/<category>/test_public/
  {good,bad}/<stem>.tiff``: the same maps as the server would receive them (float16, through
  ``submission.MapTransform``; MVTec's offline dataset class names them so under ``anomaly_images/``), with
  the transform and tau of each method and object in ``<out>/official_maps/transform.json``.

``official_metrics`` computes the suite's measures (``ad_core.metrics``) from such written maps and the
full-size masks, as the official scripts see them; docs/official_evaluation.md shows both side by side.
A run without ``--official-maps`` removes the maps an earlier run wrote there, saying so (the folder holds
this run's maps or none).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from ad_core.data.io import image_size, read_mask
from ad_core.data.samples import CategoryFiles, Sample
from ad_core.errors import FileFormatError
from experiments.records.artifacts import prune
from experiments.records.submission import (
    TRANSFORM_FILE,
    MapTransform,
    map_transform,
    to_image_size,
    write_map_tiff,
    write_transforms,
)

log = logging.getLogger("ad-repro")
FOLDER = "official_maps"
PUBLIC = "test_public"  # MVTec AD 2's public test set, as its offline dataset class names it


def evaluated_samples(files: CategoryFiles) -> list[Sample]:
    """Every test image of a category (normal and anomalous), by relative name."""
    return sorted(files.test_good + files.test_anomalous, key=lambda s: s.relpath)


def map_path(maps_dir: Path, category: str, sample: Sample) -> Path:
    """Where an official script looks for ``sample``'s map: ``<maps_dir>/<category>/test/<type>/<stem>.tiff``."""
    return Path(maps_dir) / category / Path(sample.relpath).with_suffix(".tiff")


def write_official_maps(run) -> list[Path]:
    """Write every test image's map of each map-making method's clean per-class model (``StudyRun``); the
    written files ([] without ``--official-maps``: the folder's earlier maps are removed)."""
    folder = run.out / FOLDER
    if not run.config.official_maps:
        prune(folder, set(), "official map(s)")
        return []
    written: list[Path] = []
    n_maps = 0
    used: dict[str, dict[str, MapTransform]] = {}
    for method in run.config.methods:
        for category, prepared in run.prepared.items():
            files = prepared.clean
            samples = evaluated_samples(files)
            fitted = run.fitted(run.work.uses[(FOLDER, method, None, category)])
            _, maps = fitted.model.score(run.store.batches(samples))
            if maps is None:
                break  # an image-level method (DN2) makes no maps
            transform = None
            if files.capabilities.unscored_sets:  # MVTec AD 2: test_public as the server would receive it too
                transform = used.setdefault(method, {})[category] = map_transform(run, fitted, category, files)
            for sample, m in zip(samples, maps):
                full = to_image_size(m, image_size(sample.path))
                path = map_path(folder / method, category, sample)
                write_map_tiff(path, full, np.float32)
                written.append(path)
                n_maps += 1
                if transform is not None:
                    public = folder / method / category / PUBLIC / sample.defect / f"{Path(sample.relpath).stem}.tiff"
                    write_map_tiff(public, transform.to_float16(full))
                    written.append(public)
    if used:
        write_transforms(folder / TRANSFORM_FILE, used)
        written.append(folder / TRANSFORM_FILE)
    prune(folder, set(written), "official map(s)")
    if written:
        log.info("official maps: %d test-image maps in %s, at each image's size (docs/official_evaluation.md)",
                 n_maps, folder)
    return written


def read_map(path: Path, shape: tuple[int, int], within: Path) -> np.ndarray:
    """A written map: a regular file inside ``within``, a 2-d real TIFF of ``shape``; FileFormatError otherwise."""
    import tifffile

    from ad_core.data.records import open_regular, refuse

    try:
        data = open_regular(path, within, max_bytes=8 * shape[0] * shape[1] + (1 << 20))
    except FileNotFoundError:
        raise refuse(path, "is missing", "write the maps again (ad-repro run ... --official-maps)") from None
    try:
        arr = tifffile.imread(io.BytesIO(data))
    except Exception as exc:  # tifffile raises several kinds on a damaged file
        raise refuse(path, f"is not a readable TIFF ({exc})", "write the maps again") from None
    if arr.ndim != 2 or arr.shape != tuple(shape) or arr.dtype.kind != "f":
        raise refuse(path, f"holds a {arr.dtype} array of shape {arr.shape}, not a real map of the image's "
                     f"{shape}", "write the maps again")
    return arr


def official_metrics(maps_dir: str | Path, files: CategoryFiles, fpr_limit: float = 0.3) -> dict[str, float | int]:
    """The suite's measures from the written maps of one category, as the official scripts see them.

    ``maps_dir``: a method's folder (``<out>/official_maps/<method>``); ``files``: the category as its layout
    reader lists it (``ad_core.data.layouts.LAYOUTS[name].discover(root, category)``).  Every test image's map
    is read at its image's size with its full-size mask (a normal image: all zeros; MVTec LOCO: the union of
    its region masks).  Returns pixel AUROC and PRO to ``fpr_limit`` (``ad_core.metrics.pixel``: exact curve,
    8-connected regions), image AUROC with each map's maximum as the image score (MVTec AD's script's rule;
    ``ad_core.metrics.image``), and the counts.  All maps must share one shape, as both official scripts
    require (a FileFormatError naming the first that does not)."""
    from ad_core.metrics.image import image_auroc
    from ad_core.metrics.pixel import pixel_metrics

    maps_dir = Path(maps_dir)
    samples = evaluated_samples(files)
    maps, masks = [], []
    for s in samples:
        shape = image_size(s.path)
        maps.append(read_map(map_path(maps_dir, files.name, s), shape, maps_dir))
        masks.append(read_mask(s.mask, shape, s.mask_values) if s.mask is not None else np.zeros(shape, bool))
        if maps[-1].shape != maps[0].shape:
            raise FileFormatError(f"{map_path(maps_dir, files.name, s)}: {maps[-1].shape} differs from the first map's "
                                  f"{maps[0].shape}; the official scripts need one size per object")
    stack = np.stack(maps)
    pixel_auroc, pro = pixel_metrics(stack, np.stack(masks), fpr_limit)
    labels = np.array([s.label for s in samples])
    return {"pixel_auroc": pixel_auroc, "pro": pro, "image_auroc": image_auroc(stack.max(axis=(1, 2)), labels),
            "fpr_limit": fpr_limit, "images": len(samples), "anomalous": int(labels.sum()),
            "pixels_per_image": int(stack[0].size)}
