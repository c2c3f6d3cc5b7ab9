"""Discovery of categories in MVTec AD layout (docs/protocol.md §1).

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
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from ad_core.data.io import IMAGE_SUFFIXES, bit_depth, is_wide
from ad_core.errors import DatasetError

log = logging.getLogger(__name__)

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
    mask: Path | None = None  # a mask file, or a folder of masks whose union is the defect (MVTec LOCO)
    bits: int | None = None  # a 16-bit container's bit depth (its category's); None: an 8-bit image
    mask_values: str = "binary"  # "binary": 0 and one value; "labels": any non-zero value is defect (VisA ids)


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
    bit_depth: int | None = None  # of its 16-bit-container images (None: it has none)
    # An official validation set of normal images (``validation/good/``: MVTec AD 2, MVTec LOCO): it
    # calibrates tau, and train/good all trains (ad_core.data.splits)
    val_good: list[Sample] = field(default_factory=list)
    # Images without public labels, scored only (MVTec AD 2's test_private, test_private_mixed): {set: samples}
    unlabelled: dict[str, list[Sample]] = field(default_factory=dict)
    layout: str = "mvtec"  # the reader that listed it (ad_core.data.layouts)
    split_source: str | None = None  # an official split file the train/test sets come from (VisA's 1cls.csv)

    @property
    def path(self) -> Path:
        return self.root / self.name

    def by_relpath(self) -> dict[str, Sample]:
        return {s.relpath: s for s in self.all_samples()}

    def all_samples(self) -> list[Sample]:
        """Every labelled image (the unlabelled ones are scored apart: ``unlabelled``)."""
        return self.train_good + self.val_good + self.test_good + self.test_anomalous + self.uncertain


def utf8_name(path: Path) -> str:
    """``path.name`` when it is UTF-8 (what the run's CSV files and report are written in), else an error."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path.name)
        raise DatasetError(f"{path.parent}: the name {raw!r} is not UTF-8 text: the run's CSV files and report "
                           "could not name it; rename it (e.g. convmv -f latin1 -t utf8)") from None
    return path.name


def _images_in(folder: Path, unread: list[str] | None = None) -> list[Path]:
    """The image files of ``folder``, sorted; every other entry's name goes to ``unread``."""
    entries = sorted(folder.iterdir())
    for p in entries:
        utf8_name(p)
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()]
    broken = [p.name for p in images if p.is_symlink() and not p.is_file()]  # dangling or looping links
    if broken:
        log.warning("%s: skipped %d symbolic link(s) that lead to no file (dangling or looping): %s",
                    folder, len(broken), ", ".join(broken[:5]) + (" ..." if len(broken) > 5 else ""))
    images = [p for p in images if p.is_file()]
    if unread is not None:
        unread += [f"{folder.name}/{p.name}" + ("/" if p.is_dir() else "") for p in entries
                   if p not in images and p.name not in broken]
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise DatasetError(f"{folder}: {stems[p.stem].name} and {p.name} are two images of one stem: their "
                               f"masks and scores would be confused ({p.stem}_mask.png); keep one of them")
        stems[p.stem] = p
    return images


def list_categories(root: str | Path) -> list[str]:
    """Names of the sub-folders of ``root`` that look like categories (have ``train/good``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"Data root {root} does not exist or is not a folder. Point --data / MVTEC_ROOT "
            "at the folder that holds the category folders (e.g. .../mvtec_anomaly_detection)."
        )
    return sorted(utf8_name(p) for p in root.iterdir() if (p / "train" / NORMAL).is_dir())


def _find_mask(gt_dir: Path, image: Path) -> Path | None:
    """``<stem>_mask.<ext>`` (MVTec AD), or a folder ``<stem>/`` of masks (MVTec LOCO: one per defect region)."""
    for suffix in (".png", *IMAGE_SUFFIXES):
        candidate = gt_dir / f"{image.stem}_mask{suffix}"
        if candidate.is_file():
            return candidate
    folder = gt_dir / image.stem
    return folder if folder.is_dir() else None


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
        Sample(f"train/{NORMAL}/{p.name}", p, 0, NORMAL) for p in _images_in(cat_dir / "train" / NORMAL, unread)
    ]
    test_good = [
        Sample(f"test/{NORMAL}/{p.name}", p, 0, NORMAL) for p in _images_in(cat_dir / "test" / NORMAL, unread)
    ]
    val_good = [Sample(f"validation/{NORMAL}/{p.name}", p, 0, NORMAL)
                for p in (_images_in(cat_dir / "validation" / NORMAL, unread)
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
        for img in _images_in(cat_dir / "test" / defect, unread):
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
            uncertain += [Sample(f"uncertain/{group.name}/{p.name}", p, 1, group.name)
                          for p in _images_in(group, unread)]
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat_dir,
                    len(unread), ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else ""))
    files = CategoryFiles(root, category, train_good, test_good, anomalous, has_masks, defects, uncertain,
                          val_good=val_good)
    return with_bit_depth(files)


def with_bit_depth(files: CategoryFiles) -> CategoryFiles:
    """``files`` with its bit depth (``io.bit_depth`` over its 16-bit-container images, masks apart) set on
    the category and on each such image's sample; unchanged when it has none."""
    samples = files.all_samples() + [s for group in files.unlabelled.values() for s in group]
    wide = {s.path for s in samples if is_wide(s.path)}
    if not wide:
        return files
    bits = bit_depth(sorted(wide))
    log.warning("%s: %d image(s) in 16-bit containers hold values up to %d bits: read as %d-bit (v x 255 / %d); "
                "recorded in provenance.json", files.path, len(wide), bits, bits, 2**bits - 1)

    def mark(items: list[Sample]) -> list[Sample]:
        return [replace(s, bits=bits) if s.path in wide else s for s in items]

    return replace(files, train_good=mark(files.train_good), test_good=mark(files.test_good),
                   test_anomalous=mark(files.test_anomalous), uncertain=mark(files.uncertain),
                   val_good=mark(files.val_good), unlabelled={k: mark(v) for k, v in files.unlabelled.items()},
                   bit_depth=bits)
