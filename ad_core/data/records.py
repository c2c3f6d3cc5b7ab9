"""Reading a JSON file that came from outside the process: regular files only, bounded JSON.

The schema-free half of the strict reader (``experiments.readers`` adds the schemas), in the core
layer so that the core's own records -- the built-in datasets' and shifted copies' markers, the
caches' records, all inside a ``--out`` that someone may have handed over -- are read the same
way: a FIFO, a device or a folder is refused without blocking, a link may not leave the folder it
was handed over in, the size is capped, integers and nesting are bounded, and any failure is a
``FileFormatError`` of one line naming the file (docs/security.md).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ad_core.errors import FileFormatError

MAX_BYTES = 32 * 1024 * 1024  # the largest handed-over JSON file read (a golden is ~10 kB, a run's splits ~1 MB)
MAX_INT_DIGITS = 19  # every integer the suite writes fits in 64 bits
MAX_DEPTH = 64  # nesting of the suite's own files is below 10

def refusal(path: Path, what: str, fix: str) -> FileFormatError:
    """The one-line error refusing the file at ``path``: what is wrong with it and the fix."""
    return FileFormatError(one_line(f"{path}: {what}; {fix}"))


def one_line(message: str) -> str:
    """``message`` with its control characters escaped: a message naming a file's content stays one line."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in message)


def open_regular(path: str | Path, within: str | Path | None = None, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``max_bytes``.

    ``within``: the folder the file was handed over in; a symbolic link that leads outside it is
    refused (a golden folder's ``clean.json -> /etc/passwd``).  FIFOs, devices, sockets and folders
    are refused without blocking (opened non-blocking, checked with ``fstat`` before any read).
    ``FileNotFoundError`` passes through for the caller to say what was expected.
    """
    path = Path(path)
    if within is not None and path.is_symlink():
        target, root = path.resolve(), Path(within).resolve()
        if not target.is_relative_to(root):
            raise refusal(path, f"is a symbolic link to {target}, outside {root}",
                          "replace the link by the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise refusal(path, "is a folder, not a file", "point at the file (or remove the folder)") from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise refusal(path, f"cannot be opened ({exc.strerror})", "fix its permissions or replace it") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise refusal(path, f"is {kind}, not a regular file", "replace it by the file itself")
        if st.st_size > max_bytes:
            raise refusal(path, f"is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit of such files",
                          "it is not a file this suite wrote; replace it")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise refusal(path, f"cannot be read ({exc.strerror or exc})", "replace it") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise refusal(path, f"holds over {max_bytes:,} bytes", "it is not a file this suite wrote; replace it")
    return data


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _depth(value: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, stopping at ``limit`` + 1."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(v, dict):
            stack += [(x, d + 1) for x in v.values()]
        elif isinstance(v, list):
            stack += [(x, d + 1) for x in v]
    return deepest


class _DuplicateKey(ValueError):
    """A key given twice in one JSON object."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is refused (``json`` would keep the last in silence)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def parse_json(path: str | Path, data: bytes, fix: str | None = None) -> Any:
    """JSON from ``data`` (UTF-8), integers bounded, every object's keys unique; FileFormatError naming
    ``path`` (and ``fix``) otherwise."""
    path = Path(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refusal(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                      "it is damaged or not a file this suite wrote; replace it") from None
    try:
        value = json.loads(text, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise refusal(path, f"gives the key {one_line(json.dumps(exc.args[0]))[:80]} twice in one object (which "
                            "value counts would be decided in silence)", "remove one of them, or record the file "
                      "again") from None
    except json.JSONDecodeError as exc:
        what = "is empty" if not text.strip() else \
            f"is not complete JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise refusal(path, what, fix or "it was truncated or edited; restore it or write it again") from None
    except ValueError as exc:
        raise refusal(path, f"holds {exc}", "it is not a file this suite wrote; replace it") from None
    except RecursionError:
        raise refusal(path, "is nested too deeply", "it is not a file this suite wrote; replace it") from None
    if _depth(value) > MAX_DEPTH:
        raise refusal(path, f"is nested over {MAX_DEPTH} levels", "it is not a file this suite wrote; replace it")
    return value


def read_record(path: str | Path, within: str | Path | None = None) -> dict[str, Any]:
    """A JSON object from ``path`` (``open_regular`` + ``parse_json``); FileFormatError when it is anything else."""
    path = Path(path)
    value = parse_json(path, open_regular(path, within))
    if not isinstance(value, dict):
        raise refusal(path, f"is not a JSON object (got {type(value).__name__})", "it is damaged; it is rewritten")
    return value


def intact_copy(root: str | Path, marker: str | Path, matches: Callable[[dict], bool], what: str) -> bool:
    """Whether ``root`` holds a complete written copy to keep: its ``marker`` (written last, with the
    digests of the files) reads as a record, ``matches`` it, and no file changed since (``io.changed_files``).
    A damaged marker or an altered file is said in one line naming ``what``; the caller then rebuilds.

    The one reuse check of the built-in datasets' and the synthetic set's copies."""
    from ad_core.data.io import changed_files

    root, marker = Path(root), Path(marker)
    if not (marker.exists() or marker.is_symlink()):
        return False
    log = logging.getLogger("ad_core.data")
    try:
        stored = read_record(marker, root)
    except FileFormatError as exc:
        log.warning("%s at %s: %s: rebuilt", what, root, exc)
        return False
    if not matches(stored):
        return False
    altered = changed_files(root, stored.get("files"))
    if altered:
        log.warning("%s at %s: %d file(s) edited, damaged, added or removed (%s): rebuilt", what, root, len(altered),
                    ", ".join(altered[:3]) + (" ..." if len(altered) > 3 else ""))
    return not altered
