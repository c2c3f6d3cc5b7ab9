"""Reading images and masks from disk with the checks a user needs (docs/protocol.md §1).

Decisions (docs/protocol.md §1):
- grayscale (L, I;16, 1-bit) images are kept single-channel here and repeated to 3 channels
  by the preprocessing; palette and CMYK images are converted to RGB;
- images in a 16-bit container are read at a **bit depth** ``b`` (8, 10, 12, 14 or 16: the category's,
  decided from its training images by ``ad_core.data.bit_depth``, which no single image can turn):
  ``round(min(v, 2^b - 1) * 255 / (2^b - 1))`` (half up, in integers), so 8-bit values cast to uint16
  read as they are, 12-bit camera data spans 0..255, and 8-bit data scaled to any depth reads back
  exactly;
- EXIF orientation is applied (as a viewer shows the image) to images and masks alike;
- RGBA/LA images whose alpha is fully opaque drop the alpha channel; any transparent pixel
  is refused, since what lies "behind" a transparent pixel is undefined for inspection;
- an image over PIL's pixel limit (its decompression-bomb guard, ``AD_REPRO_MAX_IMAGE_PIXELS`` to
  raise it) is an error naming the file;
- masks are binary by "non-zero" whatever their bit depth: at most two distinct values (0 and one
  foreground value: MVTec's 0/255, 0/1, a 16-bit 0/255 or 0/65535; a colour mask's channels equal), of
  their image's size; a layout whose masks are class-id maps (``Capabilities.class_id_masks``: VisA's raw
  0/1..k, its converted 0/255 in one or three channels) reads any non-zero value of any channel (of a palette
  image: any non-zero index) as defect.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ad_core.errors import DatasetError, LinkError, SettingError


def _readable_suffixes() -> tuple[str, ...]:
    """Every file-name suffix of a format PIL can open (webp, bmp, tiff, ...): what a data folder's reader reads."""
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


IMAGE_SUFFIXES = _readable_suffixes()
MAX_PIXELS_ENV = "AD_REPRO_MAX_IMAGE_PIXELS"
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16-bit containers (and PIL's 32-bit integer mode)
BIT_DEPTHS = (8, 10, 12, 14, 16)
ORIENTATION = 0x0112  # the EXIF tag; 5..8 swap width and height


MAX_PIXELS_LIMIT = 2**40  # a bound far above any camera's image (1.1e12 pixels), below PIL's integer sizes


def max_image_pixels() -> int:
    """PIL's decompression-bomb limit, or ``$AD_REPRO_MAX_IMAGE_PIXELS`` where the user raised it.

    The variable is a setting like a command-line option: a whole number of pixels written in ASCII digits
    (1 .. 2^40; spaces around it allowed, as argparse allows them); anything else is a ``SettingError``
    naming the variable -- never ignored, never taken for a damaged image."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None or value == "":
        return int(Image.MAX_IMAGE_PIXELS or 89_478_485)
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PIXELS_LIMIT:
        raise SettingError(f"{MAX_PIXELS_ENV}={value!r}: must be a whole number of pixels from 1 to "
                           f"{MAX_PIXELS_LIMIT:,} in digits (e.g. 200000000); fix or unset it")
    return int(text)


@contextmanager
def _pixel_limit(path: Path) -> Iterator[None]:
    """PIL's bomb guard at ``max_image_pixels()``, its warning an error too: one line naming ``path``."""
    limit = max_image_pixels()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DatasetError(
            f"Image {path} is over the {limit:,}-pixel limit that guards against decompression bombs "
            f"({exc.args[0].split(' pixels')[0].split('(')[-1]} pixels); if it is a genuine image, set "
            f"{MAX_PIXELS_ENV}=<pixels> and run again") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _open(path: Path) -> Image.Image:
    """The decoded image, EXIF orientation applied (images and masks alike)."""
    try:
        with _pixel_limit(path):
            img = Image.open(path)
            img.load()
            if img.getexif().get(ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
    except (DatasetError, SettingError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"Cannot read image {path}: {exc}. The file is corrupt, truncated or not an "
            "image; replace it or delete it from the dataset."
        ) from exc
    return img


def _wide_values(img: Image.Image, path: Path) -> np.ndarray:
    """The integer values of a 16-bit-container image; 32-bit ones outside 0..65535 refused."""
    arr = np.asarray(img)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise DatasetError(
            f"Image {path} has 32-bit integer values outside 0..65535; save it as an "
            "8-bit or 16-bit PNG."
        )
    return arr


def depth_of(max_value: int) -> int:
    """The smallest bit depth of ``BIT_DEPTHS`` that holds ``max_value``."""
    return next(b for b in BIT_DEPTHS if max_value <= 2**b - 1)


def is_wide(path: str | Path) -> bool:
    """Whether the image is stored in a 16-bit container (from its header: no pixels decoded)."""
    path = Path(path)
    try:
        with _pixel_limit(path), Image.open(path) as img:
            return img.mode in WIDE_MODES
    except (DatasetError, SettingError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False  # not an image: the reader names it when it is read


def decode_wide(path: Path) -> np.ndarray:
    """The integer values of a 16-bit-container image (``ad_core.data.bit_depth`` measures them)."""
    return _wide_values(_open(path), path)


def _to_uint8(img: Image.Image, path: Path, bits: int | None = None) -> np.ndarray:
    """HxW or HxWx3 uint8 array from a PIL image, following the decisions above (``bits``: the depth a
    16-bit container is read at, ``ad_core.data.bit_depth``, values above it saturating; None: the
    smallest depth holding all of this image's values)."""
    mode = img.mode
    if mode in WIDE_MODES:
        arr = _wide_values(img, path).astype(np.uint32)
        bits = depth_of(int(arr.max()) if arr.size else 0) if bits is None else bits
        top_value = 2**bits - 1
        return ((np.minimum(arr, top_value) * 255 + top_value // 2) // top_value).astype(np.uint8)
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


def read_image(path: str | Path, bits: int | None = None) -> np.ndarray:
    """Decode an image: uint8 array of shape (H, W) for grayscale or (H, W, 3).

    ``bits``: the category's bit depth (``bit_depth``) for a 16-bit container; None: the image's own."""
    path = Path(path)
    return _to_uint8(_open(path), path, bits)


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image as it is shown (EXIF orientation applied), from its header: no pixels decoded."""
    path = Path(path)
    try:
        with _pixel_limit(path), Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
    except (DatasetError, SettingError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"Cannot read image {path}: {exc}. The file is corrupt or not an image; replace "
            "it or delete it from the dataset."
        ) from exc
    return height, width


def _decoded(img: Image.Image, path: Path) -> np.ndarray:
    """A mask image's values, any bit depth (non-zero stays non-zero)."""
    return _wide_values(img, path) if img.mode in WIDE_MODES else _to_uint8(img, path)


def _one_channel(arr: np.ndarray, path: Path, save_as: str) -> np.ndarray:
    """(H, W): a grey image's values, or a colour image's whose channels agree (DatasetError otherwise)."""
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise DatasetError(f"Mask {path} is a colour image with differing channels; save masks as {save_as}.")
        arr = arr[..., 0]
    return arr


def _check_size(arr: np.ndarray, path: Path, image_size: tuple[int, int] | None) -> None:
    if image_size is not None and arr.shape != tuple(image_size):
        raise DatasetError(f"Mask {path} is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image is "
                           f"{image_size[1]}x{image_size[0]}; a mask must have its image's size.")


def read_mask_channel(path: str | Path, image_size: tuple[int, int]) -> np.ndarray:
    """One ground-truth PNG's values (H, W), as written (MVTec LOCO: 0 outside its region, the defect type's
    pixel value inside); DatasetError for a colour image with differing channels or another size than its image's."""
    path = Path(path)
    arr = _one_channel(_decoded(_open(path), path), path, "single-channel PNGs")
    _check_size(arr, path, image_size)
    return arr


def read_mask(path: str | Path, image_size: tuple[int, int] | None = None, values: str = "binary") -> np.ndarray:
    """Decode a ground-truth mask into a bool array (H, W); foreground = the non-zero pixels.

    ``image_size`` is the (H, W) of the image it belongs to; a mask of another size is an
    error (MVTec masks are pixel-aligned with their image).  ``path`` may be a folder of masks
    (MVTec LOCO: one per defect region): their union.  ``values``: "binary" (0 and one value:
    MVTec AD's 0/255) or "labels" (any number of non-zero class ids, VisA's; a colour mask's
    channels are then or-ed, as anomalib's 3-channel conversions write them).
    """
    path = Path(path)
    if path.is_dir():
        parts = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not parts:
            raise DatasetError(f"Mask folder {path} holds no mask image; put the defect's masks there (one "
                               "PNG per region) or remove the folder with its image")
        union = read_mask(parts[0], image_size, values)
        for part in parts[1:]:
            union |= read_mask(part, image_size, values)
        return union
    img = _open(path)
    if values == "labels":
        arr = np.asarray(img) if img.mode == "P" else _decoded(img, path)  # a palette's indices are the ids
        arr = arr.any(axis=-1) if arr.ndim == 3 else arr
        _check_size(arr, path, image_size)
        return arr > 0
    arr = _one_channel(_decoded(img, path), path, "single-channel 0/255 PNGs")
    values = np.unique(arr)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if len(values) > 6 else "")
        raise DatasetError(
            f"Mask {path} is not binary: {len(values)} distinct values ({shown}). Masks "
            "must hold 0 for normal pixels and one value (255 or 1) for defects; "
            "re-save it thresholded, as a PNG (JPEG compression makes masks non-binary). Class-id masks "
            "(0 and 1..k, one id per defect class) are read as such only by a layout that declares them (VisA's)."
        )
    _check_size(arr, path, image_size)
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


def mask_sha256(path: str | Path) -> str:
    """SHA-256 of a mask file, or of a mask folder's (name, SHA-256) pairs (MVTec LOCO's one-per-region masks)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    parts = [f"{p.name}\0{file_sha256(p)}" for p in sorted(path.iterdir()) if p.is_file()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def folder_digests(root: str | Path) -> dict[str, str]:
    """{relative path: SHA-256} of every image file below ``root`` (what a written copy is checked by)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def changed_files(root: str | Path, recorded: object) -> list[str]:
    """The files of a written copy that differ from ``recorded`` (``folder_digests`` when it was written):
    edited, damaged, added or removed; all of them when nothing usable was recorded."""
    now = folder_digests(root)
    if not isinstance(recorded, dict):
        return sorted(now) or ["(no record)"]
    return sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))


_WRITE_ROOTS: set[str] = set()  # folders the user named for writing: below them no link is followed


def confine_writes(*roots: str | Path | None) -> None:
    """From now on (in this process) every write below one of ``roots`` follows no symbolic link in any
    component below that root (``atomic_open``).  The roots are the folders the user named (``--out``,
    ``--feature-cache``, a golden folder): links above them are the user's own choice."""
    _WRITE_ROOTS.update(os.path.abspath(r) for r in roots if r is not None)


def find_link(root: str | Path) -> Path | None:
    """The first symbolic link below ``root`` (sorted walk, links not followed), or None."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(folder, name)):
                return Path(folder, name)
    return None


def _confining_root(path: str) -> str:
    """The outermost confined root holding ``path``, else ``path``'s own folder (a caller-named file)."""
    # tuple(): a snapshot taken at once -- a Dask worker's other thread may add a root meanwhile
    holding = [r for r in tuple(_WRITE_ROOTS) if os.path.dirname(path).startswith(r.rstrip(os.sep) + os.sep)
               or os.path.dirname(path) == r]
    return min(holding, key=len) if holding else os.path.dirname(path)


def link_refusal(link: str | Path, root: str | Path) -> LinkError:
    """The one-line refusal of a symbolic link found below a folder the suite writes in."""
    return LinkError(f"{link}: is a symbolic link inside {root}, where the suite writes; nothing is written "
                     "through a link: replace it by a real folder or file (or choose another --out)")


def _open_folder(root: str, parts: list[str]) -> int:
    """A descriptor of ``root/parts...``, each part opened without following a link (made when missing)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    try:
        os.makedirs(root, exist_ok=True)  # the root itself, and the path to it, are the user's to name
    except FileExistsError:
        pass  # a file or a dangling link there: the open below says so
    fd = os.open(root, flags)
    try:
        for i, part in enumerate(parts):
            try:
                os.mkdir(part, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and \
                        stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise link_refusal(os.path.join(root, *parts[:i + 1]), root) from None
                raise type(exc)(exc.errno, exc.strerror, os.path.join(root, *parts[:i + 1])) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` (rename).

    The one writer of the project: a reader (or a restarted run) sees the old file or the complete new
    one, never a half-written file; on an error the temporary file is removed and ``path`` is untouched.
    Nothing is written through a symbolic link: below a folder named with ``confine_writes`` (a run's
    ``--out``) a folder that is a link is a ``LinkError`` naming it, before any write (the folders are
    opened one by one with ``O_NOFOLLOW`` and the file is created and renamed relative to its folder's
    descriptor, so a link planted meanwhile is not followed either); a link where ``path`` itself stands
    is replaced by the file, as a rename does, never written through.
    ``mode``: "wb" or "w" (UTF-8 text).
    """
    path = Path(os.path.abspath(path))
    root = _confining_root(str(path))
    parts = list(path.parent.relative_to(root).parts)
    try:
        folder = _open_folder(root, parts)
    except OSError as exc:
        raise _named(exc, Path(exc.filename or path)) from None
    tmp = ""
    try:
        try:
            st = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):  # found before writing: the rename would fail after it
            raise IsADirectoryError(errno.EISDIR, "is a folder where this file belongs", str(path))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        for _ in range(100):
            name = f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:  # 0o666 less the umask, as any created file (mkstemp's 0600 would hide results from a team)
                fd = os.open(name, flags, 0o666, dir_fd=folder)
            except FileExistsError:
                continue
            tmp = name
            break
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
        os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        tmp = ""
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        if tmp:
            try:
                os.unlink(tmp, dir_fd=folder)
            except OSError:
                pass
        os.close(folder)


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` (the file the user knows), not the temporary file beside it."""
    named = type(exc)(exc.errno, exc.strerror or str(exc), str(path))
    return named if exc.errno is not None else OSError(errno.EIO, str(exc), str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_open``)."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_torch_save(path: str | Path, obj: object) -> None:
    """``torch.save(obj)`` to ``path`` atomically, serialised in memory first: a full disk is then the
    OSError of a plain write (ENOSPC, naming ``path``), not torch's 'enforce fail' RuntimeError."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


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
