"""Reading images and masks from disk with the checks a user needs (docs/protocol.md §1).

Decisions (documented in the README):
- grayscale (L, I;16, 1-bit) images are kept single-channel here and repeated to 3 channels
  by the preprocessing; palette and CMYK images are converted to RGB;
- 16-bit images are converted to 8-bit by ``v // 257`` (full range kept);
- RGBA/LA images whose alpha is fully opaque drop the alpha channel; any transparent pixel
  is refused, since what lies "behind" a transparent pixel is undefined for inspection;
- masks must hold at most two distinct values (background 0 and one foreground value, as
  MVTec's 0/255 PNGs do) and match their image's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ad_core.errors import DatasetError


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"Cannot read image {path}: {exc}. The file is corrupt, truncated or not an "
            "image; replace it or delete it from the dataset."
        ) from exc
    return img


def _to_uint8(img: Image.Image, path: Path) -> np.ndarray:
    """HxW or HxWx3 uint8 array from a PIL image, following the decisions above."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise DatasetError(
                f"Image {path} has 32-bit integer values outside 0..65535; save it as an "
                "8-bit or 16-bit PNG."
            )
        return (arr.astype(np.uint32) // 257).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA" if mode != "LA" else "LA")
        alpha = np.asarray(rgba)[..., -1]
        if alpha.min() < 255:
            raise DatasetError(
                f"Image {path} has transparent pixels ({int((alpha < 255).sum())} of "
                f"{alpha.size}); an inspection image must be opaque. Flatten it onto the "
                "background you want and save it as RGB or grayscale."
            )
        return np.asarray(rgba.convert("RGB" if mode != "LA" else "L"))
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"))
    if mode == "F":
        raise DatasetError(
            f"Image {path} is a floating-point image (mode F); save it as an 8-bit or "
            "16-bit PNG."
        )
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image: uint8 array of shape (H, W) for grayscale or (H, W, 3)."""
    path = Path(path)
    return _to_uint8(_open(path), path)


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image from its header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(
            f"Cannot read image {path}: {exc}. The file is corrupt or not an image; replace "
            "it or delete it from the dataset."
        ) from exc
    return height, width


def read_mask(path: str | Path, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a ground-truth mask into a bool array (H, W); foreground = the non-zero value.

    ``image_size`` is the (H, W) of the image it belongs to; a mask of another size is an
    error (MVTec masks are pixel-aligned with their image).
    """
    path = Path(path)
    arr = _to_uint8(_open(path), path)
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise DatasetError(
                f"Mask {path} is a colour image with differing channels; save masks as "
                "single-channel 0/255 PNGs."
            )
        arr = arr[..., 0]
    values = np.unique(arr)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DatasetError(
            f"Mask {path} is not binary: {len(values)} distinct values ({shown}). Masks "
            "must hold 0 for normal pixels and one value (255 or 1) for defects; "
            "re-save it thresholded, as a PNG (JPEG compression makes masks non-binary)."
        )
    if image_size is not None and arr.shape != tuple(image_size):
        raise DatasetError(
            f"Mask {path} is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image is "
            f"{image_size[1]}x{image_size[0]}; a mask must have its image's size."
        )
    return arr > 0


def bytes_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read now in 4 MB blocks (what a checksum check must do: no memo)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path, _memo: dict[tuple[str, int, int, int], str] = {}) -> str:  # noqa: B006
    """SHA-256 of an input file's bytes, memoised per (path, size, mtime, inode): an edit in place re-hashes."""
    path = Path(path)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _memo:
        _memo[key] = bytes_sha256(path)
    return _memo[key]


def folder_digests(root: str | Path) -> dict[str, str]:
    """{relative path: SHA-256} of every image file below ``root`` (what a written copy is checked by)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")}


def changed_files(root: str | Path, recorded: object) -> list[str]:
    """The files of a written copy that differ from ``recorded`` (``folder_digests`` when it was written):
    edited, damaged, added or removed; all of them when nothing usable was recorded."""
    now = folder_digests(root)
    if not isinstance(recorded, dict):
        return sorted(now) or ["(no record)"]
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


def process_umask() -> int:
    """This process's umask (read without changing it where Linux tells it, else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` (rename).

    The one atomic-write helper of the project: a reader (or a restarted run) sees the old
    file or the complete new one, never a half-written file; on an error the temporary
    file is removed and ``path`` is untouched.  ``mode``: "wb" or "w" (UTF-8 text).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp's 0600 would hide results from a team's readers
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``)."""
    with atomic_open(path) as fh:
        fh.write(data)


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array, or a bool mask as 0/255, atomically.

    The format follows the file's suffix (PNG for ``.png``), so copies keep their names.
    """
    path = Path(path)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_open(path) as fh:
        Image.fromarray(np.ascontiguousarray(array)).save(fh, format=fmt)


def write_json(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
