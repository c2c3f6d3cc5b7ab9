"""BTAD (Mishra et al. 2021, VT-ADL) as it ships, read without conversion.

``<category>/train/ok/``, ``test/{ok,ko}/`` and ``ground_truth/ko/<stem>.<ext>`` -- no ``_mask`` suffix,
and the extensions differ by category (01: .bmp images, .png masks; 02: .png, .png; 03: .bmp, .bmp,
as anomalib's BTech reader lists them), so a mask is found by its stem, whatever its extension.
Image labels come from the folders (some ``ko`` masks vanish at low resolution).  Relative names take
MVTec AD's form: ``train/good/``, ``test/good/``, ``test/ko/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ad_core.data.io import IMAGE_SUFFIXES
from ad_core.data.layouts.listing import found_for, images_in, with_bit_depth
from ad_core.data.samples import NORMAL, CategoryFiles, Sample
from ad_core.errors import DatasetError

log = logging.getLogger(__name__)

CATEGORIES = ("01", "02", "03")


def looks_like(cat: Path) -> bool:
    return (cat / "train" / "ok").is_dir()


def discover(root: Path, category: str) -> CategoryFiles:
    root = Path(root)
    cat = root / category
    for sub in ("train/ok", "test/ok"):
        if not (cat / sub).is_dir():
            raise DatasetError(f"{cat / sub} is missing: a BTAD category holds train/ok/, test/ok/, test/ko/ and "
                               "ground_truth/ko/")
    unread: list[str] = []
    train = [Sample(f"train/{NORMAL}/{p.name}", p, 0, NORMAL) for p in images_in(cat / "train" / "ok", unread)]
    test_good = [Sample(f"test/{NORMAL}/{p.name}", p, 0, NORMAL) for p in images_in(cat / "test" / "ok", unread)]
    gt = cat / "ground_truth" / "ko"
    masks = {p.stem: p for p in (images_in(gt) if gt.is_dir() else []) if p.suffix.lower() in IMAGE_SUFFIXES}
    bad = []
    for p in images_in(cat / "test" / "ko", unread) if (cat / "test" / "ko").is_dir() else []:
        if p.stem not in masks:
            raise DatasetError(f"Anomalous image {p} has no mask: expected {gt}/{p.stem}.png (or .bmp); "
                               f"{found_for(gt, p.stem)}. Restore it from BTAD's archive")
        bad.append(Sample(f"test/ko/{p.name}", p, 1, "ko", masks[p.stem]))
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat, len(unread),
                    ", ".join(unread[:5]))
    if not train or not test_good:
        raise DatasetError(f"{cat}: train/ok and test/ok must each hold images")
    files = CategoryFiles(root, category, train, test_good, bad, has_masks=True, defects=["ko"] if bad else [],
                          layout="btad")
    return with_bit_depth(files)
