"""VisA (Zou et al. 2022, amazon-science/spot-diff) as it ships, read without conversion.

``<root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG``, masks ``Data/Masks/Anomaly/<stem>.png`` whose
pixels are defect-class ids (0 background, 1..k a class; spot-diff issue #1), so a pixel is a defect
when non-zero.  The official split ``<root>/split_csv/1cls.csv`` (columns object, split, label, image,
mask; paths relative to the root) is used exactly when present: its train normals train, its test
images test, and the run's validation is carved from them by the study's rule (ad_core.data.splits).
Without it, every tenth normal image in sorted order is a test normal (1cls holds out about a tenth),
said in one line.  Relative names take MVTec AD's form: ``train/good/``, ``test/good/``, ``test/anomaly/``.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from ad_core.data.layout import NORMAL, CategoryFiles, Sample, _images_in, with_bit_depth
from ad_core.data.records import open_regular
from ad_core.errors import DatasetError, FileFormatError

log = logging.getLogger(__name__)

OBJECTS = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2", "pcb3",
           "pcb4", "pipe_fryum")
SPLIT_FILE = "split_csv/1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
DEFECT = "anomaly"  # VisA has no defect-type folders: one defect name for all


def looks_like(cat: Path) -> bool:
    return (cat / "Data" / "Images" / "Normal").is_dir()


def _inside(root: Path, rel: str, where: str) -> Path:
    """``root/rel`` when ``rel`` is a relative path inside ``root``, else an error naming the row."""
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DatasetError(f"{root / SPLIT_FILE}: {where} names {rel[:80]!r}, not a path inside {root}")
    return root.joinpath(*parts)


def _split_rows(root: Path, category: str) -> list[dict[str, str]]:
    """The rows of the official split file for ``category`` (its columns checked)."""
    path = root / SPLIT_FILE
    try:  # the bounded, regular-file reader of every outside file (a FIFO or a link out is refused)
        text = open_regular(path, root).decode("utf-8-sig")
    except FileFormatError as exc:
        raise DatasetError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: is not UTF-8 text ({exc.reason}); restore VisA's split file or delete "
                           "it") from None
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DatasetError(f"{path}: columns {reader.fieldnames} are not VisA's {list(COLUMNS)}; restore the file")
    rows = [r for r in reader if r["object"] == category]
    for r in rows:
        if r["split"] not in ("train", "test") or r["label"] not in ("normal", "anomaly"):
            raise DatasetError(f"{path}: a {category} row has split {r['split']!r} and label {r['label']!r}; "
                               "expected train/test and normal/anomaly")
        if r["split"] == "train" and r["label"] != "normal":
            raise DatasetError(f"{path}: {r['image']} is an anomaly in the train split; the 1cls split trains on "
                               "normal images only")
    return rows


def discover(root: Path, category: str) -> CategoryFiles:
    root = Path(root)
    cat = root / category
    if not looks_like(cat):
        raise DatasetError(f"{cat}/Data/Images/Normal is missing: a VisA object folder holds Data/Images/Normal/, "
                           "Data/Images/Anomaly/ and Data/Masks/Anomaly/")
    unread: list[str] = []
    normal = _images_in(cat / "Data" / "Images" / "Normal", unread)
    anomaly_dir = cat / "Data" / "Images" / "Anomaly"
    anomalies = _images_in(anomaly_dir, unread) if anomaly_dir.is_dir() else []
    mask_dir = cat / "Data" / "Masks" / "Anomaly"

    def mask_of(image: Path, named: Path | None = None) -> Path:
        mask = named or mask_dir / f"{image.stem}.png"
        if not mask.is_file():
            raise DatasetError(f"Anomalous image {image} has no mask: expected {mask}. Restore it from VisA's archive")
        return mask

    def good(split: str, p: Path) -> Sample:
        return Sample(f"{split}/{NORMAL}/{p.name}", p, 0, NORMAL)

    def bad(p: Path, mask: Path) -> Sample:
        return Sample(f"test/{DEFECT}/{p.name}", p, 1, DEFECT, mask, mask_values="labels")

    source = None
    if (root / SPLIT_FILE).exists() or (root / SPLIT_FILE).is_symlink():  # one that is not a file is refused
        source = SPLIT_FILE
        train, test_good, test_bad = [], [], []
        for r in _split_rows(root, category):
            image = _inside(root, r["image"], "a row")
            if not image.is_file():
                raise DatasetError(f"{root / SPLIT_FILE} names {r['image']}, which is not on disk: an incomplete "
                                   "copy of VisA; restore the image or the split file")
            if r["label"] == "normal":
                (train if r["split"] == "train" else test_good).append(good(r["split"], image))
            else:
                test_bad.append(bad(image, mask_of(image, _inside(root, r["mask"], "a mask") if r["mask"] else None)))
        listed = {s.path for s in train + test_good + test_bad}
        left = [p.name for p in normal + anomalies if p not in listed]
        if left:
            log.warning("%s: %d image(s) not in %s: not used (%s)", cat, len(left), SPLIT_FILE, ", ".join(left[:3]))
        train.sort(key=lambda s: s.relpath)
        test_good.sort(key=lambda s: s.relpath)
        test_bad.sort(key=lambda s: s.relpath)
    else:
        log.warning("%s: no %s under %s: every tenth normal image (sorted) is a test normal, the rest train "
                    "(1cls holds out about a tenth); the official split is VisA's split file", cat, SPLIT_FILE, root)
        train = [good("train", p) for i, p in enumerate(normal) if i % 10 != 9]
        test_good = [good("test", p) for i, p in enumerate(normal) if i % 10 == 9]
        test_bad = [bad(p, mask_of(p)) for p in anomalies]
    if not train or not test_good:
        raise DatasetError(f"{cat}: no normal image to {'train on' if not train else 'test on'}; an incomplete copy")
    if unread:
        log.warning("%s: %d file(s) not read (not an image format PIL opens, or a folder): %s", cat, len(unread),
                    ", ".join(unread[:5]))
    files = CategoryFiles(root, category, train, test_good, test_bad, has_masks=True,
                          defects=[DEFECT] if test_bad else [], layout="visa", split_source=source)
    return with_bit_depth(files)
