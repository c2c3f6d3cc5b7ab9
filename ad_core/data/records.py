"""Reading a JSON file that came from outside the process: regular files only, bounded JSON, strict schemas.

The strict reader's one machinery (``experiments.readers`` holds the schemas of the experiments'
files and says why pydantic), in the core layer so that the core's own records -- the built-in
datasets' and shifted copies' markers, the caches' records, the splits files, all inside a
``--out`` that someone may have handed over -- are read the same way: a FIFO, a device or a
folder is refused without blocking, a link may not leave the folder it was handed over in, the
size is capped, integers and nesting are bounded, a schema (``Strict``) is held strictly, and any
failure is a ``FileFormatError`` of one line naming the file, the field and the fix
(docs/security.md).

A file's schema is also the type its writer builds it with (``Strict.to_json``): what is written
is what is read, field by field and in the order of the schema's fields.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from ad_core.errors import FileFormatError

T = TypeVar("T")

MAX_BYTES = 32 * 1024 * 1024  # the largest handed-over JSON file read (a golden is ~10 kB, a run's splits ~1 MB)
MAX_INT_DIGITS = 19  # every integer the suite writes fits in 64 bits
MAX_DEPTH = 64  # nesting of the suite's own files is below 10

def refuse(path: Path, what: str, fix: str) -> FileFormatError:
    """The one-line error of a refused file: '<path>: <what>; <fix>'."""
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
            raise refuse(path, f"is a symbolic link to {target}, outside {root}",
                          "replace the link by the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise refuse(path, "is a folder, not a file", "point at the file (or remove the folder)") from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise refuse(path, f"cannot be opened ({exc.strerror})", "fix its permissions or replace it") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise refuse(path, f"is {kind}, not a regular file", "replace it by the file itself")
        if st.st_size > max_bytes:
            raise refuse(path, f"is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit of such files",
                          "it is not a file this suite wrote; replace it")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise refuse(path, f"cannot be read ({exc.strerror or exc})", "replace it") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise refuse(path, f"holds over {max_bytes:,} bytes", "it is not a file this suite wrote; replace it")
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
        raise refuse(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                      "it is damaged or not a file this suite wrote; replace it") from None
    try:
        value = json.loads(text, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise refuse(path, f"gives the key {one_line(json.dumps(exc.args[0]))[:80]} twice in one object (which "
                            "value counts would be decided in silence)", "remove one of them, or record the file "
                      "again") from None
    except json.JSONDecodeError as exc:
        what = "is empty" if not text.strip() else \
            f"is not complete JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise refuse(path, what, fix or "it was truncated or edited; restore it or write it again") from None
    except ValueError as exc:
        raise refuse(path, f"holds {exc}", "it is not a file this suite wrote; replace it") from None
    except RecursionError:
        raise refuse(path, "is nested too deeply", "it is not a file this suite wrote; replace it") from None
    if _depth(value) > MAX_DEPTH:
        raise refuse(path, f"is nested over {MAX_DEPTH} levels", "it is not a file this suite wrote; replace it")
    return value



# -- strict schemas: a parsed value held to a file's type -----------------------------------------
def _shown(part: object) -> str:
    """A field name or key as a message shows it: as it is when printable, else JSON-quoted (one line)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else json.dumps(text)


def _union_tag(part: object) -> bool:
    """Whether a pydantic error location part names a member of a union (``UncertainGroupRecord``,
    ``int``, ``function-before[...]``) rather than a field or a key."""
    return isinstance(part, str) and (part in _SCHEMAS or "[" in part or part in ("int", "float", "str", "bool"))


def describe_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'field a.b.c: what (got ...)', and how many more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [_shown(p) for p in first["loc"] if not _union_tag(p)]
    where = f"field {'.'.join(loc)}" if loc else "the top level"
    what = {"extra_forbidden": "is not a known field", "missing": "is missing"}.get(first["type"])
    if what is None:
        msg = first["msg"].removeprefix("Value error, ")
        got = json.dumps(first.get("input"), default=str)
        what = f"{msg[0].lower()}{msg[1:]} (got {got[:60]}{'...' if len(got) > 60 else ''})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where} {what}{more}"


def convert(path: str | Path, value: object, schema: type[T], fix: str) -> T:
    """``value`` as ``schema`` (a strict pydantic model); FileFormatError naming the file and the field."""
    try:
        return schema.model_validate(value, strict=True)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise refuse(Path(path), describe_error(exc), fix) from None


def read(path: str | Path, schema: type[T], fix: str, within: str | Path | None = None,
         max_bytes: int = MAX_BYTES) -> T:
    """Open, parse and convert one handed-over file (``open_regular``, ``parse_json``, ``convert``)."""
    return convert(path, parse_json(path, open_regular(path, within, max_bytes)), schema, fix)


def check_format(path: str | Path, found: int, known: int, what: str) -> None:
    """An unknown ``format`` version is named: ``found`` newer (or older) than the ``known`` one."""
    if found != known:
        raise refuse(Path(path), f"is a {what} of format {found}; this version of ad-repro reads format {known}",
                     "record it again with this version (or use the version that wrote it)")


class Strict(BaseModel):
    """A file's schema, read and written: exact types, unknown fields refused.

    Its writer builds it (the same validation as a reader's, so nothing is written that would be
    refused) and writes ``to_json()``: the fields in their declared order, a field marked
    ``Field(exclude_if=...)`` left out where the writer leaves it out."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _SCHEMAS.add(cls.__name__)

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object (for ``ad_core.data.io.write_json``)."""
        return self.model_dump(mode="python")


_SCHEMAS: set[str] = set()  # the schemas' names, which pydantic puts in a union member's error location


def absent(value: object) -> bool:
    """Whether an optional field is left out of the file (``Field(exclude_if=absent)``): it is None."""
    return value is None


def _number(v: object) -> object:
    """A JSON number (NaN / infinities included) or null; never a boolean or a string."""
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise ValueError(f"must be a number or null, got {type(v).__name__}")


def _as_written(v: object, handler: ValidatorFunctionWrapHandler) -> object:
    """A float field's value validated as a float, kept an integer where it was one: ``0`` is written
    back as ``0``, not ``0.0`` (a file read and written again keeps its bytes)."""
    out = handler(v)
    return v if type(v) is int else out


Number = Annotated[object, BeforeValidator(_number)]  # one message, not one per member of int | float
Count = Annotated[int, Field(ge=0)]  # a count of images or files
Real = Annotated[float, WrapValidator(_as_written)]  # a number (strict float), an integer kept as written


def read_record(path: str | Path, within: str | Path | None = None) -> dict[str, Any]:
    """A JSON object from ``path`` (``open_regular`` + ``parse_json``); FileFormatError when it is anything else."""
    path = Path(path)
    value = parse_json(path, open_regular(path, within))
    if not isinstance(value, dict):
        raise refuse(path, f"is not a JSON object (got {type(value).__name__})", "it is damaged; it is rewritten")
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
