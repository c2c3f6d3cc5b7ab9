"""MVTec AD 2 (Heckler-Kram et al. 2025) as it ships, read without conversion.

``<object>/train/good/``, ``validation/good/`` (normals only: tau by the normal-only rule),
``test_public/{good,bad}/`` with ``test_public/ground_truth/bad/<stem>_mask.png`` (255 defect), and the
flat ``test_private/`` and ``test_private_mixed/`` without public ground truth: scored only, their maps
written in the evaluation server's format (experiments/records/submission.py), no metric claimed for them.
Relative names take MVTec AD's form: ``train/good/``, ``validation/good/``, ``test/good/``, ``test/bad/``;
the private sets keep theirs (``test_private/000_regular.png``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ad_core.data.layouts.listing import found_for, images_in, with_bit_depth
from ad_core.data.samples import NORMAL, Capabilities, CategoryFiles, Sample
from ad_core.errors import DatasetError

log = logging.getLogger(__name__)

OBJECTS = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
PRIVATE = ("test_private", "test_private_mixed")
CAPABILITIES = Capabilities(validation_set=True, unscored_sets=True, measures=("au_pro_005", "seg_f1"))


def looks_like(cat: Path) -> bool:
    return (cat / "train" / "good").is_dir() and (cat / "test_public").is_dir()


def discover(root: Path, category: str) -> CategoryFiles:
    root = Path(root)
    cat = root / category
    for sub in ("train/good", "validation/good", "test_public/good"):
        if not (cat / sub).is_dir():
            raise DatasetError(f"{cat / sub} is missing: an MVTec AD 2 object holds train/good/, validation/good/ "
                               "and test_public/{good,bad}/")
    unread: list[str] = []

    def normals(sub: str, split: str) -> list[Sample]:
        return [Sample(f"{split}/{NORMAL}/{p.name}", p, 0, NORMAL) for p in images_in(cat / sub, unread)]

    train, val, test_good = normals("train/good", "train"), normals("validation/good", "validation"), \
        normals("test_public/good", "test")
    bad_dir, gt = cat / "test_public" / "bad", cat / "test_public" / "ground_truth" / "bad"
    bad = []
    for p in images_in(bad_dir, unread) if bad_dir.is_dir() else []:
        mask = gt / f"{p.stem}_mask.png"
        if not mask.is_file():
            raise DatasetError(f"Anomalous image {p} has no mask: expected {mask}; {found_for(gt, p.stem)}. Restore "
                               "it from the archive")
        bad.append(Sample(f"test/bad/{p.name}", p, 1, "bad", mask))
    private = {name: [Sample(f"{name}/{p.name}", p, -1, "unknown") for p in images_in(cat / name, unread)]
               for name in PRIVATE if (cat / name).is_dir()}
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat, len(unread),
                    ", ".join(unread[:5]))
    if not train or not val or not test_good:
        raise DatasetError(f"{cat}: train/good, validation/good and test_public/good must each hold images")
    files = CategoryFiles(root, category, train, test_good, bad, has_masks=True, defects=["bad"] if bad else [],
                          val_good=val, unlabelled=private, layout="mvtec_ad2", capabilities=CAPABILITIES)
    return with_bit_depth(files)
