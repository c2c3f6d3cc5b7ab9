"""Discovery of categories in MVTec AD layout (docs/protocol.md §1).

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Only file names are listed here (no pixels are decoded); ``ad_core.data.io`` reads and
checks the pixels.  A category with no ``ground_truth/`` folder at all is an image-level-only
dataset (``has_masks`` False); a category that has the folder but lacks one anomalous
image's mask is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ad_core.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a category.

    ``relpath`` is relative to the category folder (e.g. ``test/crack/003.png``) and is
    what splits store; ``mask`` is None for normal images and image-level-only datasets.
    """

    relpath: str
    path: Path
    label: int  # 0 normal, 1 anomalous
    defect: str  # "good" for normal images
    mask: Path | None = None


@dataclass(frozen=True)
class CategoryFiles:
    """All files of one category, each list sorted by relative path."""

    root: Path
    name: str
    train_good: list[Sample]
    test_good: list[Sample]
    test_anomalous: list[Sample]
    has_masks: bool = True
    defects: list[str] = field(default_factory=list)
    # Optional ``<category>/uncertain/<group>/*``: images of unsure label (e.g. ELPV's
    # p=1/3, 2/3 cells), never trained on nor in the study's metrics; label 1, defect = group.
    uncertain: list[Sample] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / self.name

    def by_relpath(self) -> dict[str, Sample]:
        return {s.relpath: s for s in self.all_samples()}

    def all_samples(self) -> list[Sample]:
        return self.train_good + self.test_good + self.test_anomalous + self.uncertain


def _images_in(folder: Path) -> list[Path]:
    entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    broken = [p.name for p in entries if p.is_symlink() and not p.is_file()]  # dangling or looping links
    if broken:
        log.warning("%s: skipped %d symbolic link(s) that lead to no file (dangling or looping): %s",
                    folder, len(broken), ", ".join(broken[:5]) + (" ..." if len(broken) > 5 else ""))
    return [p for p in entries if p.is_file()]


def list_categories(root: str | Path) -> list[str]:
    """Names of the sub-folders of ``root`` that look like categories (have ``train/good``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"Data root {root} does not exist or is not a folder. Point --data / MVTEC_ROOT "
            "at the folder that holds the category folders (e.g. .../mvtec_anomaly_detection)."
        )
    return sorted(p.name for p in root.iterdir() if (p / "train" / NORMAL).is_dir())


def _find_mask(gt_dir: Path, image: Path) -> Path | None:
    for suffix in (".png", *IMAGE_SUFFIXES):
        candidate = gt_dir / f"{image.stem}_mask{suffix}"
        if candidate.is_file():
            return candidate
    return None


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
    train_good = [
        Sample(f"train/{NORMAL}/{p.name}", p, 0, NORMAL) for p in _images_in(cat_dir / "train" / NORMAL)
    ]
    test_good = [
        Sample(f"test/{NORMAL}/{p.name}", p, 0, NORMAL) for p in _images_in(cat_dir / "test" / NORMAL)
    ]
    for sub, items in (("train/good", train_good), ("test/good", test_good)):
        if not items:
            raise DatasetError(
                f"{cat_dir / sub} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
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
        for img in _images_in(cat_dir / "test" / defect):
            mask = None
            if has_masks:
                mask = _find_mask(gt_root / defect, img)
                if mask is None:
                    raise DatasetError(
                        f"Anomalous image {img} has no mask: expected "
                        f"{gt_root / defect / (img.stem + '_mask.png')}. Add the mask, or "
                        "remove the whole ground_truth/ folder to use the category for "
                        "image-level metrics only."
                    )
            anomalous.append(Sample(f"test/{defect}/{img.name}", img, 1, defect, mask))
    uncertain: list[Sample] = []
    if (cat_dir / "uncertain").is_dir():
        for group in sorted(d for d in (cat_dir / "uncertain").iterdir() if d.is_dir()):
            uncertain += [Sample(f"uncertain/{group.name}/{p.name}", p, 1, group.name) for p in _images_in(group)]
    return CategoryFiles(root, category, train_good, test_good, anomalous, has_masks, defects, uncertain)
