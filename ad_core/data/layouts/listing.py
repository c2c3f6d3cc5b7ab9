"""What every layout reader does with a folder: its names checked, its images listed, and the 16-bit
depth its images are read at set on the category (docs/protocol.md §1)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path

from ad_core.data import bit_depth
from ad_core.data.io import IMAGE_SUFFIXES, is_wide
from ad_core.data.samples import CategoryFiles, Sample
from ad_core.errors import DatasetError

log = logging.getLogger(__name__)


def utf8_name(path: Path) -> str:
    """``path.name`` when it is UTF-8 (what the run's CSV files and report are written in), else an error."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path.name)
        raise DatasetError(f"{path.parent}: the name {raw!r} is not UTF-8 text: the run's CSV files and report "
                           "could not name it; rename it (e.g. convmv -f latin1 -t utf8)") from None
    return path.name


def images_in(folder: Path, unread: list[str] | None = None) -> list[Path]:
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


def found_for(folder: Path, stem: str) -> str:
    """What ``folder`` holds for an image of ``stem``, in words, for the error of a missing mask: the names
    that begin with the stem (``000.png``, ``000-mask.png``, ``000_MASK.bmp``, ``000/``; never ``0001.png``), or
    ``nothing``; a folder that does not exist is said so, with the folders its parent holds instead."""
    near = re.compile(rf"{re.escape(stem)}(?![0-9a-z])", re.IGNORECASE)
    if folder.is_dir():
        seen = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if near.match(p.name))
        more = f" and {len(seen) - 5} more" if len(seen) > 5 else ""
        return f"found {', '.join(seen[:5]) + more or 'nothing'} for {stem} in {folder}"
    held = sorted(p.name + "/" for p in folder.parent.iterdir() if p.is_dir()) if folder.parent.is_dir() else []
    instead = f"; {folder.parent.name}/ holds {', '.join(held[:5]) or 'no folder'}" if folder.parent.is_dir() else ""
    return f"found nothing for {stem}: {folder} does not exist{instead}"


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
