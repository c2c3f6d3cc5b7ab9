"""MVTec AD's reader: discovery of categories in its layout (docs/protocol.md §1).

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Files are listed here, and their headers read to find 16-bit containers, whose pixels alone are
decoded once for the category's bit depth (``ad_core.data.io.bit_depth``); ``ad_core.data.io``
reads and checks the pixels.  Every file of a data folder is either read (any format PIL opens:
``io.IMAGE_SUFFIXES``) or named in one warning per category; a name that is not UTF-8, or two
images of one stem in one folder (``000.png`` and ``000.jpg`` would share ``000_mask.png``), is an
error naming the files.  A category with no ``ground_truth/`` folder at all is an image-level-only
dataset (``has_masks`` False); a category that has the folder but lacks one anomalous image's mask
is an error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ad_core.data.io import IMAGE_SUFFIXES
from ad_core.data.layouts.listing import images_in, utf8_name, with_bit_depth
from ad_core.data.samples import NORMAL, CategoryFiles, Sample
from ad_core.errors import DatasetError

log = logging.getLogger(__name__)


def list_categories(root: str | Path) -> list[str]:
    """Names of the sub-folders of ``root`` that look like categories (have ``train/good``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"Data root {root} does not exist or is not a folder. Point --data / MVTEC_ROOT "
            "at the folder that holds the category folders (e.g. .../mvtec_anomaly_detection)."
        )
    return sorted(utf8_name(p) for p in root.iterdir() if (p / "train" / NORMAL).is_dir())


def _masks_by_stem(gt_dir: Path) -> dict[str, list[Path]]:
    """{image stem: its masks in ``gt_dir``}: files ``<stem>_mask.<ext>`` of any image suffix in any case
    (``000_mask.PNG`` too) and folders ``<stem>/`` (MVTec LOCO), listed once per folder."""
    found: dict[str, list[Path]] = {}
    for p in sorted(gt_dir.iterdir()) if gt_dir.is_dir() else ():
        if p.is_dir():
            found.setdefault(p.name, []).append(p)
        elif p.stem.endswith("_mask") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            found.setdefault(p.stem.removesuffix("_mask"), []).append(p)
    return found


def _find_mask(gt_dir: Path, image: Path, masks: dict[str, list[Path]] | None = None) -> Path | None:
    """``<stem>_mask.<ext>`` (MVTec AD; the suffix in any case), or a folder ``<stem>/`` of masks (MVTec LOCO:
    one per defect region); two of them for one image (``000_mask.png`` and ``000/``) are an error naming both.
    ``masks``: ``_masks_by_stem(gt_dir)``, when the caller lists the folder once for all its images."""
    found = (_masks_by_stem(gt_dir) if masks is None else masks).get(image.stem, [])
    if len(found) > 1:
        names = [p.name + ("/" if p.is_dir() else "") for p in found]
        raise DatasetError(f"{gt_dir}: {', '.join(names[:-1])} and {names[-1]} are {len(names)} masks of one image "
                           f"({image}): which one is its defect would be a guess; keep one of them")
    return found[0] if found else None


def _no_mask(gt_root: Path, gt_dir: Path, image: Path) -> DatasetError:
    """The error of an anomalous image without a mask: what ``gt_dir`` holds for its stem, and the fix."""
    near = re.compile(rf"{re.escape(image.stem)}(?![0-9a-z])", re.IGNORECASE)  # 000: 000.png, 000_MASK.png; not 0001
    seen = sorted(p.name + ("/" if p.is_dir() else "") for p in (gt_dir.iterdir() if gt_dir.is_dir() else ())
                  if near.match(p.name))
    where = gt_dir if gt_dir.is_dir() else f"{gt_dir} (no such folder)"
    fix = "Add the mask"
    if not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in gt_root.rglob("*")):
        fix += ", or remove the whole ground_truth/ folder (it holds no mask) to use the category for image-level " \
               "metrics only"
    return DatasetError(f"Anomalous image {image} has no mask: expected {gt_dir / (image.stem + '_mask.png')} (or a "
                        f"folder {image.stem}/ of masks); found {', '.join(seen[:5]) or 'nothing'} for {image.stem} "
                        f"in {where}. {fix}.")


def discover_category(root: str | Path, category: str, image_level: bool = False) -> CategoryFiles:
    """List the files of ``root/category``; raise :class:`DatasetError` on a broken layout.

    ``image_level``: the dataset has no masks by design (ELPV): no word about a missing ``ground_truth/``."""
    root = Path(root)
    cat_dir = root / category
    if not cat_dir.is_dir():
        available = list_categories(root) if root.is_dir() else []
        raise DatasetError(
            f"Category folder {cat_dir} not found. Categories found under {root}: "
            f"{', '.join(available) or 'none'}. Check the category name and the data root."
        )
    for sub in ("train/good", "test/good"):
        if not (cat_dir / sub).is_dir():
            raise DatasetError(
                f"{cat_dir / sub} is missing: a category in MVTec AD layout needs "
                "train/good/ (normal training images) and test/good/ (normal test images)."
            )
    unread: list[str] = []
    train_good = [
        Sample(f"train/{NORMAL}/{p.name}", p, 0, NORMAL) for p in images_in(cat_dir / "train" / NORMAL, unread)
    ]
    test_good = [
        Sample(f"test/{NORMAL}/{p.name}", p, 0, NORMAL) for p in images_in(cat_dir / "test" / NORMAL, unread)
    ]
    val_good = [Sample(f"validation/{NORMAL}/{p.name}", p, 0, NORMAL)
                for p in (images_in(cat_dir / "validation" / NORMAL, unread)
                          if (cat_dir / "validation" / NORMAL).is_dir() else [])]
    for sub, items in (("train/good", train_good), ("test/good", test_good)):
        if not items:
            raise DatasetError(
                f"{cat_dir / sub} holds no images (any format PIL opens: .png, .jpg, .bmp, .tif, .webp, ...): "
                "the split would be empty. Put the normal images there."
            )

    gt_root = cat_dir / "ground_truth"
    has_masks = gt_root.is_dir()
    if not has_masks and not image_level:
        log.warning(
            "%s has no ground_truth/ folder: treated as an image-level-only dataset (pixel "
            "metrics will be absent). If you forgot the masks, put them in "
            "%s/<defect>/<stem>_mask.png.", cat_dir, gt_root,
        )
    defects = sorted(
        d.name for d in (cat_dir / "test").iterdir() if d.is_dir() and d.name != NORMAL
    )
    anomalous: list[Sample] = []
    for defect in defects:
        masks = _masks_by_stem(gt_root / defect) if has_masks else {}
        for img in images_in(cat_dir / "test" / defect, unread):
            mask = None
            if has_masks:
                mask = _find_mask(gt_root / defect, img, masks)
                if mask is None:
                    raise _no_mask(gt_root, gt_root / defect, img)
            anomalous.append(Sample(f"test/{defect}/{img.name}", img, 1, defect, mask))
    uncertain: list[Sample] = []
    if (cat_dir / "uncertain").is_dir():
        for group in sorted(d for d in (cat_dir / "uncertain").iterdir() if d.is_dir()):
            uncertain += [Sample(f"uncertain/{group.name}/{p.name}", p, 1, group.name)
                          for p in images_in(group, unread)]
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat_dir,
                    len(unread), ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else ""))
    files = CategoryFiles(root, category, train_good, test_good, anomalous, has_masks, defects, uncertain,
                          val_good=val_good)
    return with_bit_depth(files)
