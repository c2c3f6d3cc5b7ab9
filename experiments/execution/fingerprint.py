"""Fingerprints of the code and libraries behind each cached artifact.

Every cache of a run records the fingerprint of what produced it: the source of the
``ad_core`` modules on that artifact's path (per file, SHA-256) and the versions of the
libraries that compute it.  A cache whose recorded fingerprint differs is recomputed, with
what it depends on, and the run says so in one line naming the changed files or versions
(``describe_change``).  A change to code on no artifact's path (metrics, thresholds: they
are recomputed on every run anyway) reuses every cache.

Stages and what they cover (a stage includes the stages it builds on):
- ``data``: the built-in datasets (embedded, ELPV copy) and image decoding;
- ``shift``: the MVTec-Shift copy (data + ``ad_core/shift``);
- ``features``: preprocessing and the backbones (data + features, torch/torchvision/timm);
- ``models``: fitted models and their scores (shift + features + ``ad_core/models``,
  faiss/numba/numpy).
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cache
from importlib import metadata
from pathlib import Path

from ad_core.data.records import read_record
from ad_core.errors import FileFormatError

log = logging.getLogger("ad-repro")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds ad_core/

_DATA = ("ad_core/__init__.py", "ad_core/seeding.py", "ad_core/data/io.py", "ad_core/data/samples.py",
         "ad_core/data/layouts/listing.py", "ad_core/data/layouts/mvtec.py", "ad_core/data/embedded.py",
         "ad_core/data/elpv.py")
CODE: dict[str, tuple[str, ...]] = {
    "data": _DATA,
    "shift": (*_DATA, "ad_core/data/dataset.py", "ad_core/data/preprocess.py", "ad_core/shift"),
    "features": (*_DATA, "ad_core/data/dataset.py", "ad_core/data/preprocess.py", "ad_core/features"),
    "models": (*_DATA, "ad_core/data/dataset.py", "ad_core/data/preprocess.py", "ad_core/shift",
               "ad_core/features", "ad_core/models"),
}
LIBRARIES: dict[str, tuple[str, ...]] = {
    "data": ("numpy", "pillow", "scikit-image"),
    "shift": ("numpy", "pillow", "torch", "torchvision", "scipy"),
    "features": ("numpy", "pillow", "torch", "torchvision", "timm"),
    "models": ("numpy", "pillow", "torch", "torchvision", "timm", "faiss", "numba", "scipy"),
}


def read_source(relpath: str) -> bytes:
    """The bytes of one source file (tests replace this to plant an edit)."""
    return (PACKAGE_ROOT / relpath).read_bytes()


def _files(entries: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for entry in entries:
        path = PACKAGE_ROOT / entry
        if path.is_dir():
            out += sorted(p.relative_to(PACKAGE_ROOT).as_posix() for p in path.rglob("*.py"))
        else:
            out.append(entry)
    return sorted(set(out))


@cache
def library_version(name: str) -> str:
    """Installed version of a distribution (faiss: whichever build is installed)."""
    candidates = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss") if name == "faiss" else (name,)
    for dist in candidates:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def fingerprint(stage: str) -> dict[str, dict[str, str]]:
    """``{"code": {file: sha256[:16]}, "libraries": {name: version}}`` of one stage."""
    code = {f: hashlib.sha256(read_source(f)).hexdigest()[:16] for f in _files(CODE[stage])}
    return {"code": code, "libraries": {name: library_version(name) for name in LIBRARIES[stage]}}


def digest(record: dict) -> str:
    """A short stable key of a fingerprint (or any JSON record)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def describe_change(old: dict | None, new: dict) -> str:
    """What differs between two fingerprints, in words: changed files first, then versions."""
    if not old:
        return "made by an earlier version of ad-repro that recorded no fingerprint"
    parts = []
    old_code, new_code = old.get("code", {}), new.get("code", {})
    changed = sorted(f for f in set(old_code) | set(new_code) if old_code.get(f) != new_code.get(f))
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        parts.append(f"code changed: {shown}")
    old_lib, new_lib = old.get("libraries", {}), new.get("libraries", {})
    for name in sorted(set(old_lib) | set(new_lib)):
        if old_lib.get(name) != new_lib.get(name):
            parts.append(f"{name} {old_lib.get(name)} -> {new_lib.get(name)}")
    return "; ".join(parts) or "fingerprint differs"


def note_if_stale(record_path: Path, key: str, current: dict, what: str) -> bool:
    """Log one line when the JSON record at ``record_path`` was made under another fingerprint.

    ``key``: where the record keeps its fingerprint; ``what``: the artifact, for the message.
    Returns True when the artifact will be recomputed for that reason.
    """
    if not record_path.is_file():
        return False
    try:
        old = read_record(record_path).get(key)
    except FileFormatError:
        return False  # unreadable: the writer replaces it anyway (and says so)
    if old == current:
        return False
    log.warning("%s: recomputing (%s)", what, describe_change(old, current))
    return True
