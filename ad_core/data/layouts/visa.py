"""VisA (Zou et al. 2022, amazon-science/spot-diff) as it ships, read without conversion.

``<root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG``, masks ``Data/Masks/Anomaly/<stem>.png`` whose
pixels are defect-class ids (0 background, 1..k a class; spot-diff issue #1), so a pixel is a defect
when non-zero.  The official split ``<root>/split_csv/1cls.csv`` (columns object, split, label, image,
mask; paths relative to the root) is used exactly when present: its train normals train, its test
images test, and the run's validation is carved from them by the study's rule (ad_core.data.splits).
Its rows are data checked against the folders, each refusal one line naming the file, the line and the
image: a row's object is the folder its image lies in, its label the image's folder (``Normal``,
``Anomaly``), a normal row has no mask, an anomaly's mask is its own ``Data/Masks/Anomaly/<stem>.png``
(never a JPEG, whose noise would read as defect), and no image is named twice.
Without it, every tenth normal image in sorted order is a test normal (1cls holds out about a tenth):
the rule, ``HOLDOUT``, is said in one line and carried on the files (``CategoryFiles.holdout``) into the
splits file, provenance.json and report.md.  The masks are class-id maps (``class_id_masks``).  Relative
names take MVTec AD's form: ``train/good/``, ``test/good/``, ``test/anomaly/``.  The converted form
(spot-diff's ``prepare_data.py``: ``1cls/<object>/train/good/`` ...) is ``visa_converted``'s.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import NamedTuple

from ad_core.data.layouts.listing import found_for, images_in, with_bit_depth
from ad_core.data.records import open_regular
from ad_core.data.samples import NORMAL, Capabilities, CategoryFiles, Sample
from ad_core.errors import DatasetError, FileFormatError

log = logging.getLogger(__name__)

OBJECTS = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2", "pcb3",
           "pcb4", "pipe_fryum")
SPLIT_FILE = "split_csv/1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
DEFECT = "anomaly"  # VisA has no defect-type folders: one defect name for all
CAPABILITIES = Capabilities(official_split=True, class_id_masks=True)
# the hold-out rule without the split file, in words: declared once, said in the log and recorded by
# the splits file, provenance.json and report.md
HOLDOUT = (f"no {SPLIT_FILE}: every tenth normal image in sorted order (the 10th, 20th, ...) is a test normal, "
           "the others train (VisA's 1cls split holds out about a tenth too, but its own choice of images)")


def looks_like(cat: Path) -> bool:
    return (cat / "Data" / "Images" / "Normal").is_dir()


JPEG = (".jpg", ".jpeg")  # a mask in a lossy format: its compression noise would read as defect pixels


class Row(NamedTuple):
    """One checked row of the split file: its line, split, label and paths (``rel``: the image as written)."""

    line: int
    split: str
    label: str
    rel: str
    image: Path
    mask: Path | None


def _inside(root: Path, rel: str, where: str) -> Path:
    """``root/rel`` when ``rel`` is a relative path inside ``root``, else an error naming the row."""
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DatasetError(f"{root / SPLIT_FILE}: {where} names {rel[:80]!r}, not a path inside {root}")
    return root.joinpath(*parts)


def _shown(text: str) -> str:
    """A value of the file as one line of a message (quoted when it holds a control character)."""
    return text[:120] if text.isprintable() else repr(text[:120])


def _read(path: Path, root: Path, category: str) -> list[tuple[int, dict[str, str]]]:
    """The rows of ``category`` in the split file with their line numbers (its columns and fields checked)."""
    try:  # the bounded, regular-file reader of every outside file (a FIFO or a link out is refused)
        text = open_regular(path, root).decode("utf-8-sig")
    except FileFormatError as exc:
        raise DatasetError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: is not UTF-8 text ({exc.reason}); restore VisA's split file or delete "
                           "it") from None
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next(reader, [])
        if tuple(header) != COLUMNS:
            raise DatasetError(f"{path}: columns {header} are not VisA's {list(COLUMNS)}; restore the file")
        for fields in reader:
            if not fields or fields[0] != category:  # a blank line, another object's row
                continue
            if len(fields) != len(COLUMNS):
                raise DatasetError(f"{path} line {reader.line_num}: {len(fields)} fields, VisA's split file has "
                                   f"{len(COLUMNS)} ({','.join(COLUMNS)}); restore the file")
            rows.append((reader.line_num, dict(zip(COLUMNS, fields))))
    except csv.Error as exc:
        raise DatasetError(f"{path} line {reader.line_num}: {exc}; restore VisA's split file") from None
    return rows


def _check(root: Path, category: str, line: int, r: dict[str, str]) -> Row:
    """One row of ``category`` held against VisA's folders: its object, its label, its mask's place and format."""
    path = root / SPLIT_FILE
    at = f"{path} line {line} ({_shown(r['image'])})"
    if r["split"] not in ("train", "test") or r["label"] not in ("normal", "anomaly"):
        raise DatasetError(f"{at}: a {category} row has split {r['split']!r} and label {r['label']!r}; "
                           "expected train/test and normal/anomaly")
    if r["split"] == "train" and r["label"] != "normal":
        raise DatasetError(f"{at}: an anomaly in the train split; the 1cls split trains on normal images only")
    image = _inside(root, r["image"], f"line {line}")
    parts = image.relative_to(root).parts
    if parts[0] != category:
        raise DatasetError(f"{at}: a {category} row names an image of {parts[0]}/: a row's object is the folder "
                           "its image lies in; correct the row or restore VisA's split file")
    folder = (category, "Data", "Images", r["label"].capitalize())
    if parts[:-1] != folder:
        raise DatasetError(f"{at}: a {r['label']} row names an image outside {'/'.join(folder)}/: its label "
                           "contradicts its folder; correct the label or restore VisA's split file")
    if r["label"] == "normal":
        if r["mask"]:
            raise DatasetError(f"{at}: a normal row names a mask ({_shown(r['mask'])}); a normal image has "
                               "none: empty the mask column or correct the label")
        return Row(line, r["split"], r["label"], r["image"], image, None)
    if not r["mask"]:  # VisA's own <stem>.png (discover says so when it is missing)
        return Row(line, r["split"], r["label"], r["image"], image, None)
    mask = _inside(root, r["mask"], f"line {line}'s mask")
    want = f"{category}/Data/Masks/Anomaly/{image.stem}.png"
    if mask.suffix.lower() in JPEG:
        raise DatasetError(f"{at}: the mask {_shown(r['mask'])} is a JPEG, whose compression noise would read as "
                           f"defect pixels (non-binary masks are refused as MVTec AD's are); use VisA's PNG mask "
                           f"{want}")
    if mask.relative_to(root).parts[:-1] != (category, "Data", "Masks", "Anomaly"):
        raise DatasetError(f"{at}: the mask {_shown(r['mask'])} lies outside {category}/Data/Masks/Anomaly/; "
                           f"point the row at {want} or restore VisA's split file")
    if mask.stem != image.stem:
        raise DatasetError(f"{at}: the mask {_shown(r['mask'])} is another image's (VisA names it {image.stem}"
                           f".png): another defect would be scored; point the row at {want} or restore VisA's "
                           "split file")
    return Row(line, r["split"], r["label"], r["image"], image, mask)


def _split_rows(root: Path, category: str) -> list[Row]:
    """The rows of the official split file for ``category``, each checked against the folders, and no image
    named twice (a duplicated row, an anomaly counted twice, an image both in train and in test)."""
    path = root / SPLIT_FILE
    rows: list[Row] = []
    first: dict[Path, tuple[int, dict[str, str]]] = {}
    for line, r in _read(path, root, category):
        row = _check(root, category, line, r)
        if row.image in first:
            before, seen = first[row.image]
            at = f"{path} line {line} ({_shown(r['image'])})"
            if seen == r:
                raise DatasetError(f"{at}: repeats line {before}, which would count the image twice; delete one "
                                   "of the two rows")
            raise DatasetError(f"{at}: the image is already named by line {before} ({seen['split']} "
                               f"{seen['label']}), here {r['split']} {r['label']}: one image in two rows is counted "
                               "twice or both trains and tests; keep one of the rows or restore VisA's split file")
        first[row.image] = (line, r)
        rows.append(row)
    return rows


def discover(root: Path, category: str) -> CategoryFiles:
    root = Path(root)
    cat = root / category
    if not looks_like(cat):
        raise DatasetError(f"{cat}/Data/Images/Normal is missing: a VisA object folder holds Data/Images/Normal/, "
                           "Data/Images/Anomaly/ and Data/Masks/Anomaly/")
    unread: list[str] = []
    normal = images_in(cat / "Data" / "Images" / "Normal", unread)
    anomaly_dir = cat / "Data" / "Images" / "Anomaly"
    anomalies = images_in(anomaly_dir, unread) if anomaly_dir.is_dir() else []
    mask_dir = cat / "Data" / "Masks" / "Anomaly"

    def mask_of(image: Path, named: Path | None = None, row: str = "") -> Path:
        mask = named or mask_dir / f"{image.stem}.png"
        if not mask.is_file():
            raise DatasetError(f"{row}Anomalous image {image} has no mask: expected {mask}; "
                               f"{found_for(mask.parent, image.stem)}. Restore it from VisA's archive")
        return mask

    def good(split: str, p: Path) -> Sample:
        return Sample(f"{split}/{NORMAL}/{p.name}", p, 0, NORMAL)

    def bad(p: Path, mask: Path) -> Sample:
        return Sample(f"test/{DEFECT}/{p.name}", p, 1, DEFECT, mask, mask_values=CAPABILITIES.mask_values)

    source = None
    if (root / SPLIT_FILE).exists() or (root / SPLIT_FILE).is_symlink():  # one that is not a file is refused
        source = SPLIT_FILE
        train, test_good, test_bad = [], [], []
        for r in _split_rows(root, category):
            if not r.image.is_file():
                raise DatasetError(f"{root / SPLIT_FILE} line {r.line} names {_shown(r.rel)}, which is not on disk: "
                                   "an incomplete copy of VisA; restore the image or the split file")
            if r.label == "normal":
                (train if r.split == "train" else test_good).append(good(r.split, r.image))
            else:
                test_bad.append(bad(r.image, mask_of(r.image, r.mask, f"{root / SPLIT_FILE} line {r.line}: ")))
        listed = {s.path for s in train + test_good + test_bad}
        left = [p.name for p in normal + anomalies if p not in listed]
        if left:
            log.warning("%s: %d image(s) not in %s: not used (%s)", cat, len(left), SPLIT_FILE, ", ".join(left[:3]))
        train.sort(key=lambda s: s.relpath)
        test_good.sort(key=lambda s: s.relpath)
        test_bad.sort(key=lambda s: s.relpath)
    else:
        log.warning("%s: %s; recorded in the splits file, provenance.json and report.md", cat, HOLDOUT)
        train = [good("train", p) for i, p in enumerate(normal) if i % 10 != 9]
        test_good = [good("test", p) for i, p in enumerate(normal) if i % 10 == 9]
        test_bad = [bad(p, mask_of(p)) for p in anomalies]
    if not train or not test_good:
        why = f" in {root / SPLIT_FILE}; restore VisA's split file" if source else "; an incomplete copy"
        raise DatasetError(f"{cat}: no normal image to {'train on' if not train else 'test on'}{why}")
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat, len(unread),
                    ", ".join(unread[:5]))
    files = CategoryFiles(root, category, train, test_good, test_bad, has_masks=True,
                          defects=[DEFECT] if test_bad else [], layout="visa", capabilities=CAPABILITIES,
                          split_source=source, holdout=None if source else HOLDOUT)
    return with_bit_depth(files)
