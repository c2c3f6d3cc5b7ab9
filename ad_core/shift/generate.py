"""Write a shifted copy of a category in MVTec layout, with each image's parameters logged."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from ad_core import SEED
from ad_core.data.dataset import load_pair
from ad_core.data.io import changed_files, file_sha256, folder_digests, mask_sha256, write_image, write_json
from ad_core.data.records import read_record
from ad_core.data.samples import CategoryFiles
from ad_core.errors import FileFormatError
from ad_core.seeding import rng_for
from ad_core.shift.transform import apply_shift, sample_shift_params

PARAMS_LOG = "shift_params.json"
logger = logging.getLogger(__name__)


def write_shifted_category(
    files: CategoryFiles, out_root: str | Path, seed: int = SEED, progress: bool = True, stamp: object = None,
    workers: int | None = None,
) -> Path:
    """Shift every image of ``files`` into ``out_root/<category>`` (same relative names).

    Masks go to ``ground_truth/<defect>/<stem>_mask.png``; parameters to
    ``<category>/shift_params.json``.  A complete earlier copy made with the same seed and
    ``stamp`` (the caller's fingerprint of the code that shifts), from sources of the same
    content and with its files as written (SHA-256 of each, in the log), is kept as it is (the
    log is written last, so its presence means complete); any other copy is rewritten, saying why.
    Returns the category folder of the copy.  ``workers``: threads (default: one per core).
    """
    dst = Path(out_root) / files.name
    log_path = dst / PARAMS_LOG
    samples = files.all_samples()
    sources = {s.relpath: [file_sha256(s.path), mask_sha256(s.mask) if s.mask else None, *([s.bits] if s.bits else [])]
               for s in samples}  # a 16-bit image's bit depth is part of what its shifted copy was made from
    try:
        log = read_record(log_path, dst) if log_path.exists() or log_path.is_symlink() else {}
    except FileFormatError as exc:  # a damaged log: the copy is rewritten
        logger.warning("shifted copy of %s: %s: rewritten", files.name, exc)
        log = {}
    if log:
        if log.get("seed") == seed and log.get("stamp") == stamp and set(log.get("images", {})) == set(sources):
            edited = sorted(k for k in sources if log.get("sources", {}).get(k) != sources[k])
            damaged = changed_files(dst, log.get("files"))
            if not edited and not damaged:
                return dst
            logger.warning("shifted copy of %s: %s: rewritten", files.name, "; ".join(
                f"{len(names)} {what} ({', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"
                for what, names in (("source image(s) edited", edited), ("shifted file(s) altered", damaged))
                if names))
    def shift_one(sample) -> dict[str, object]:
        image, mask = load_pair(sample)
        params = sample_shift_params(rng_for(seed, files.name, sample.relpath))  # per image: (seed, category, relpath)
        shifted, shifted_mask = apply_shift(image, mask if sample.mask is not None else None, params)
        write_image(dst / sample.relpath, shifted)
        if shifted_mask is not None:
            write_image(dst / "ground_truth" / sample.defect / f"{Path(sample.relpath).stem}_mask.png", shifted_mask)
        return params.to_json()

    # one image per thread: decoding, torch's warps and PNG encoding release the GIL, and each image's
    # parameters come from its own generator, so the copy is the same whatever the thread count
    with ThreadPoolExecutor(max_workers=workers or len(os.sched_getaffinity(0))) as pool:
        done = tqdm(pool.map(shift_one, samples), total=len(samples), desc=f"shift {files.name}",
                    disable=not progress, leave=False)
        params_log = {sample.relpath: params for sample, params in zip(samples, done)}
    write_json(log_path, {"seed": seed, "category": files.name, "stamp": stamp, "images": params_log,
                          "sources": sources, "files": folder_digests(dst)})  # what the copy is checked by
    return dst
