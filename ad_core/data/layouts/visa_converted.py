"""VisA (Zou et al. 2022) in its converted form: the MVTec-style tree that spot-diff's ``utils/prepare_data.py``
writes from the official 1cls split (anomalib's VisA datamodule writes the same tree).

``<save>/1cls/<object>/train/good/*.JPG``, ``test/good/``, ``test/bad/`` and ``ground_truth/bad/<stem>.png``:
a mask is named as its image (no ``_mask`` suffix) and holds 0/255 (spot-diff: the channels it read;
anomalib: three), VisA's class ids binarised.  They are read as class-id maps all the same
(``class_id_masks``: any non-zero value of any channel is defect), so a copy that kept the raw ids reads
alike.  ``--data`` may name ``<save>`` (whose one split folder, ``1cls/``, holds the objects) or that folder.
A category is an object folder of VisA's names (``--layout visa_converted`` reads others); its folders are
the split: ``train/good`` trains, ``test`` tests, nothing held out.  Read by MVTec AD's reader
(``mvtec.discover_category``, masks named as their images expected); a 2-class split (``train/bad/``) and
a JPEG mask (its noise would read as defect) are refused, each in one line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ad_core.data.layouts import mvtec, visa
from ad_core.data.samples import Capabilities, CategoryFiles
from ad_core.errors import DatasetError

DEFECT = "bad"
CAPABILITIES = Capabilities(class_id_masks=True)


def _is_object(cat: Path) -> bool:
    """An object folder in the converted form, whatever its name (never VisA's own ``Data/`` tree)."""
    return (cat / "train" / "good").is_dir() and (cat / "test" / DEFECT).is_dir() and not visa.looks_like(cat)


def _objects(folder: Path, any_name: bool) -> list[Path]:
    """The object folders in ``folder`` (of VisA's names unless ``any_name``), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (any_name or p.name in visa.OBJECTS) and _is_object(p))


def looks_like(cat: Path) -> bool:
    """An object of VisA's in the converted form, or a split folder (``1cls/``) that holds some."""
    return (cat.name in visa.OBJECTS and _is_object(cat)) or bool(_objects(cat, any_name=False))


def holder(root: Path) -> Path:
    """The folder that holds the objects: ``root`` itself, or its one split folder that holds VisA's."""
    root = Path(root)
    if _objects(root, any_name=True):
        return root
    splits = [p for p in sorted(root.iterdir()) if p.is_dir() and _objects(p, any_name=False)] \
        if root.is_dir() else []
    if len(splits) > 1:
        shown = ", ".join(p.name + "/" for p in splits)
        raise DatasetError(f"{root} holds {len(splits)} converted VisA splits ({shown}): point --data at the one to "
                           "read (1cls/: the study's one-class setting)")
    return splits[0] if splits else root


def categories(root: Path) -> list[str]:
    return [p.name for p in _objects(holder(root), any_name=True)]


def discover(root: Path, category: str) -> CategoryFiles:
    base = holder(Path(root))
    cat = base / category
    if (cat / "train" / DEFECT).is_dir() and any((cat / "train" / DEFECT).iterdir()):
        raise DatasetError(f"{cat / 'train' / DEFECT} holds anomalous training images: a 2-class split of VisA "
                           "(2cls_highshot, 2cls_fewshot); the study trains on normal images only: convert with "
                           "prepare_data.py --split-type 1cls, or point --data at VisA itself")
    files = mvtec.discover_category(base, category, plain_masks=True)
    jpeg = next((s.mask for s in files.test_anomalous if s.mask is not None and s.mask.suffix.lower() in visa.JPEG),
                None)
    if jpeg is not None:
        raise DatasetError(f"Mask {jpeg} is a JPEG, whose compression noise would read as defect pixels; use the PNG "
                           f"mask prepare_data.py writes ({jpeg.stem}.png)")
    anomalous = [replace(s, mask_values=CAPABILITIES.mask_values) for s in files.test_anomalous]
    return replace(files, test_anomalous=anomalous, layout="visa_converted", capabilities=CAPABILITIES)
