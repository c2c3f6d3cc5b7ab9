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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ad_core.data import bit_depth
from ad_core.data.io import IMAGE_SUFFIXES, is_wide
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
    bit_depth: int | None = None  # of its 16-bit-container images (None: it has none): ad_core.data.bit_depth
    bit_depth_exceptions: dict[str, str] = field(default_factory=dict)  # {image or set: read otherwise, why}
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
        masks = _masks_by_stem(gt_root / defect) if has_masks else {}
        for img in _images_in(cat_dir / "test" / defect, unread):
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
                          for p in _images_in(group, unread)]
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat_dir,
                    len(unread), ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else ""))
    files = CategoryFiles(root, category, train_good, test_good, anomalous, has_masks, defects, uncertain,
                          val_good=val_good)
    return with_bit_depth(files)


def with_bit_depth(files: CategoryFiles) -> CategoryFiles:
    """``files`` with the depth its 16-bit-container images are read at (``ad_core.data.bit_depth``: from the
    training images, masks apart, no single image deciding) set on the category and on each such sample,
    every image read otherwise named in one line; unchanged when it has none."""
    unlabelled = [s for group in files.unlabelled.values() for s in group]
    samples = files.all_samples() + unlabelled
    wide = {s.path for s in samples if is_wide(s.path)}
    if not wide:
        return files
    measured = {p: bit_depth.measure_file(p) for p in sorted(wide)}
    names = {s.path: s.relpath for s in samples}
    sets = {"validation": [s.path for s in files.val_good],
            "test": [s.path for s in files.test_good + files.test_anomalous],
            "uncertain": [s.path for s in files.uncertain],
            **{k: [s.path for s in v] for k, v in files.unlabelled.items()}}
    train = [s.path for s in files.train_good if s.path in wide]
    decided = bit_depth.decide(measured, train or sets["validation"] + sets["test"], names,
                               {k: v for k, v in sets.items() if v} if train else None)
    bits, source = decided.depth, "training images" if train else "test and validation images"
    log.warning("%s: %d image(s) in 16-bit containers, read at the depth of its %s: %d-bit (v x 255 / %d); "
                "recorded in provenance.json", files.path, len(wide), source, bits, 2**bits - 1)
    if decided.exceptions:
        shown = "; ".join(f"{k}: {v}" for k, v in list(decided.exceptions.items())[:3])
        log.warning("%s: %d image(s) or set(s) contradict the %s' %d-bit depth (%s%s); recorded in "
                    "provenance.json", files.path, len(decided.exceptions), source, bits, shown,
                    " ..." if len(decided.exceptions) > 3 else "")

    def mark(items: list[Sample]) -> list[Sample]:
        return [replace(s, bits=decided.read_at[s.path]) if s.path in wide else s for s in items]

    return replace(files, train_good=mark(files.train_good), test_good=mark(files.test_good),
                   test_anomalous=mark(files.test_anomalous), uncertain=mark(files.uncertain),
                   val_good=mark(files.val_good), unlabelled={k: mark(v) for k, v in files.unlabelled.items()},
                   bit_depth=bits, bit_depth_exceptions=decided.exceptions)
