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
is an error naming what the folder holds for its stem (removing ``ground_truth/`` is advised only where
it holds no mask at all).  A mask named as its image, ``ground_truth/<defect>/<stem>.png`` (VisA's
converted form, BTAD), is read where no ``<stem>_mask.png`` exists, said in one line (two masks of
one image are an error); a mask of no test image is named in one line and not used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from ad_core.data.io import IMAGE_SUFFIXES
from ad_core.data.layouts.listing import found_for, images_in, utf8_name, with_bit_depth
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


class Masks(NamedTuple):
    """The masks of one ``ground_truth/<defect>/`` folder, listed once for all its images."""

    suffixed: dict[str, list[Path]]  # {image stem: files <stem>_mask.<ext>, folders <stem>/ (MVTec LOCO)}
    named: dict[str, list[Path]]  # {stem: files <stem>.<ext>}: a mask named as its image (VisA's converted form)

    def all(self) -> set[Path]:
        return {p for group in self for found in group.values() for p in found}


def _masks_by_stem(gt_dir: Path) -> Masks:
    """The masks of ``gt_dir``: files ``<stem>_mask.<ext>`` of any image suffix in any case (``000_mask.PNG`` too)
    and folders ``<stem>/`` by the stem of their image, and every mask file by its own stem."""
    found, named = Masks({}, {})
    for p in sorted(gt_dir.iterdir()) if gt_dir.is_dir() else ():
        if p.is_dir():
            found.setdefault(p.name, []).append(p)
        elif p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            named.setdefault(p.stem, []).append(p)
            if p.stem.endswith("_mask"):
                found.setdefault(p.stem.removesuffix("_mask"), []).append(p)
    return Masks(found, named)


def _find_mask(gt_dir: Path, image: Path, masks: Masks | None = None) -> Path | None:
    """``<stem>_mask.<ext>`` (MVTec AD; the suffix in any case), a folder ``<stem>/`` of masks (MVTec LOCO: one
    per defect region), or a file named as the image, ``<stem>.<ext>`` (VisA's converted form); two of them for
    one image (``000_mask.png`` and ``000.png``) are an error naming both.
    ``masks``: ``_masks_by_stem(gt_dir)``, when the caller lists the folder once for all its images."""
    masks = _masks_by_stem(gt_dir) if masks is None else masks
    found = masks.suffixed.get(image.stem, []) + masks.named.get(image.stem, [])
    if len(found) > 1:
        names = [p.name + ("/" if p.is_dir() else "") for p in found]
        raise DatasetError(f"{gt_dir}: {', '.join(names[:-1])} and {names[-1]} are {len(names)} masks of one image "
                           f"({image}): which one is its defect would be a guess; keep one of them")
    return found[0] if found else None


def _no_mask(gt_root: Path, gt_dir: Path, image: Path, plain_masks: bool = False) -> DatasetError:
    """The error of an anomalous image without a mask: the names expected (the layout's own first), what
    ``gt_dir`` holds for its stem, and the fix (removing ``ground_truth/`` is advised only where it holds no mask
    at all: never to drop masks that exist)."""
    fix = "Add the mask"
    if not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in gt_root.rglob("*")):
        fix += ", or remove the whole ground_truth/ folder (it holds no mask) to use the category for image-level " \
               "metrics only"
    stem = image.stem
    first, other = (f"{stem}.png", f"{stem}_mask.png") if plain_masks else (f"{stem}_mask.png", f"{stem}.png")
    return DatasetError(f"Anomalous image {image} has no mask: expected {gt_dir / first} (or {other}, or a folder "
                        f"{stem}/ of masks); {found_for(gt_dir, stem)}. {fix}.")


def discover_category(root: str | Path, category: str, image_level: bool = False,
                      plain_masks: bool = False) -> CategoryFiles:
    """List the files of ``root/category``; raise :class:`DatasetError` on a broken layout.

    ``image_level``: the dataset has no masks by design (ELPV): no word about a missing ``ground_truth/``.
    ``plain_masks``: masks named as their images (``<stem>.png``) are the layout's own convention (VisA's
    converted form): read without the line that says so for a folder in MVTec AD's layout."""
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
    named_as_image: list[Path] = []  # masks found as <stem>.<ext>, not <stem>_mask.<ext>
    unclaimed: list[str] = []  # masks of no test image
    for defect in defects:
        gt_dir = gt_root / defect
        masks = _masks_by_stem(gt_dir) if has_masks else Masks({}, {})
        owner: dict[Path, Path] = {}  # mask: its image
        for img in images_in(cat_dir / "test" / defect, unread):
            mask = None
            if has_masks:
                mask = _find_mask(gt_dir, img, masks)
                if mask is None:
                    raise _no_mask(gt_root, gt_dir, img, plain_masks)
                if mask in owner:  # x_mask.png: the mask of x, and named as the image x_mask
                    raise DatasetError(f"{gt_dir}: {mask.name} would be the mask of two images, {owner[mask].name} "
                                       f"and {img.name}: which one's defect it is would be a guess; rename one image")
                owner[mask] = img
                if mask not in masks.suffixed.get(img.stem, []):
                    named_as_image.append(mask)
            anomalous.append(Sample(f"test/{defect}/{img.name}", img, 1, defect, mask))
        unclaimed += sorted(f"{defect}/{p.name}" for p in masks.all() - set(owner))
    if named_as_image and not plain_masks:
        first = named_as_image[0]
        log.warning("%s: %d mask(s) named as their image (%s), not MVTec AD's <stem>_mask.png: read as the mask of "
                    "the test image of the same stem, as VisA's converted form and BTAD name them", cat_dir,
                    len(named_as_image), first.relative_to(cat_dir).as_posix())
    if unclaimed:
        log.warning("%s: %d mask(s) under ground_truth/ belong to no test image (%s): not used (their image is "
                    "missing or named otherwise)", cat_dir, len(unclaimed),
                    ", ".join(unclaimed[:3]) + (" ..." if len(unclaimed) > 3 else ""))
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
