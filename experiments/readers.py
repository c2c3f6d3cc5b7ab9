"""Strict readers of every structured file a person can hand over (docs/security.md).

Golden folders, run folders (``results/*.json``, ``checksums.json``, ``provenance.json``,
``config.json`` / ``run_config.json``, ``splits/*.json``) and configurations come from
colleagues, other teams, other versions of this suite or a damaged disk.  Each is read here,
once, through one path:

1. ``open_regular``: only a regular file is opened (a FIFO, a device or a folder is refused
   before it can block or flood the reader; a symbolic link only where it stays inside the
   folder it was handed over in), and at most ``MAX_BYTES`` are read;
2. JSON is parsed with integers bounded to ``MAX_INT_DIGITS`` digits and nesting bounded;
3. the value is validated against its schema with pydantic in strict mode: a string is never
   a boolean, ``null`` is never a device, an unknown key is named, a missing one is named, an
   unknown ``format`` version is named.

Why pydantic (strict models with ``extra="forbid"``) and not msgspec or hand-written checks:
it names the failing field by its whole path through nested mappings
(``methods.padim.coffee.pro``; msgspec says ``methods[...]`` for mapping keys), strict mode
refuses every coercion (``"false"``, ``1.0`` for an integer, ``true`` for a number), and it is
well kept.  Any failure is a ``FileFormatError``: one line naming the file, the field and what
to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

MAX_BYTES = 32 * 1024 * 1024  # the largest handed-over JSON file read (a golden is ~10 kB, a run's splits ~1 MB)
MAX_INT_DIGITS = 19  # every integer the suite writes fits in 64 bits
MAX_DEPTH = 64  # nesting of the suite's own files is below 10

T = TypeVar("T")


class FileFormatError(ValueError):
    """A handed-over file cannot be used: the message names the file, the field and the fix."""


def _refuse(path: Path, what: str, fix: str) -> FileFormatError:
    return FileFormatError(f"{path}: {what}; {fix}")


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
            raise _refuse(path, f"is a symbolic link to {target}, outside {root}",
                          "replace the link by the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise _refuse(path, "is a folder, not a file", "point at the file (or remove the folder)") from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        raise _refuse(path, f"cannot be opened ({exc.strerror})", "fix its permissions or replace it") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise _refuse(path, f"is {kind}, not a regular file", "replace it by the file itself")
        if st.st_size > max_bytes:
            raise _refuse(path, f"is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit of such files",
                          "it is not a file this suite wrote; replace it")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror or exc})", "replace it") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise _refuse(path, f"holds over {max_bytes:,} bytes", "it is not a file this suite wrote; replace it")
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


def parse_json(path: str | Path, data: bytes) -> Any:
    """JSON from ``data`` (UTF-8), integers bounded; FileFormatError naming ``path`` otherwise."""
    path = Path(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                      "it is damaged or not a file this suite wrote; replace it") from None
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        what = "is empty" if not text.strip() else \
            f"is not complete JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise _refuse(path, what, "it was truncated or edited; restore it or write it again") from None
    except ValueError as exc:
        raise _refuse(path, f"holds {exc}", "it is not a file this suite wrote; replace it") from None
    except RecursionError:
        raise _refuse(path, "is nested too deeply", "it is not a file this suite wrote; replace it") from None
    if _depth(value) > MAX_DEPTH:
        raise _refuse(path, f"is nested over {MAX_DEPTH} levels", "it is not a file this suite wrote; replace it")
    return value


def describe_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as 'field a.b.c: what (got ...)', and how many more."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "the top level"
    what = {"extra_forbidden": "is not a known field", "missing": "is missing"}.get(first["type"])
    if what is None:
        msg = first["msg"].removeprefix("Value error, ")
        got = json.dumps(first.get("input"), default=str)
        what = f"{msg[0].lower()}{msg[1:]} (got {got[:60]}{'...' if len(got) > 60 else ''})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"field {where} {what}{more}"


def convert(path: str | Path, value: object, schema: type[T], fix: str) -> T:
    """``value`` as ``schema`` (a strict pydantic model); FileFormatError naming the file and the field."""
    try:
        return schema.model_validate(value, strict=True)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise _refuse(Path(path), describe_error(exc), fix) from None


def read(path: str | Path, schema: type[T], fix: str, within: str | Path | None = None,
         max_bytes: int = MAX_BYTES) -> T:
    """Open, parse and convert one handed-over file (the three steps of this module's docstring)."""
    return convert(path, parse_json(path, open_regular(path, within, max_bytes)), schema, fix)


def check_format(path: str | Path, found: int, known: int, what: str) -> None:
    """An unknown ``format`` version is named: ``found`` newer (or older) than the ``known`` one."""
    if found != known:
        raise _refuse(Path(path), f"is a {what} of format {found}; this version of ad-repro reads format {known}",
                      "record it again with this version (or use the version that wrote it)")


class Strict(BaseModel):
    """A schema: exact types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _number(v: object) -> object:
    """A JSON number (NaN / infinities included) or null; never a boolean or a string."""
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise ValueError(f"must be a number or null, got {type(v).__name__}")


Number = Annotated[object, BeforeValidator(_number)]  # one message, not one per member of int | float


# -- golden files ---------------------------------------------------------------------------
GOLDEN_FORMAT = 1  # golden files written before the field existed are format 1


class Tolerance(Strict):
    """One kind of number's allowance: ``abs`` + ``rel`` x |expected|, its rule and why."""

    rule: str
    why: str
    abs: float | None = None
    rel: float | None = None


class RecordedVerdict(Strict):
    preset: str
    status: str
    summary: str


class GoldenFile(Strict):
    """``golden/<dataset>-<backbone>/<scenario>.json`` (experiments.goldens.payload)."""

    scenario: str
    tolerances: dict[str, Tolerance]
    methods: dict[str, dict[str, dict[str, Number]]]
    format: int = GOLDEN_FORMAT
    dataset: str | None = None
    backbone: str | None = None
    weights_source: str | None = None
    seed: int | None = None
    recorded_with_verdict: RecordedVerdict | None = None


GOLDEN_FIX = "record the golden again (ad-repro golden record RUN DEST, or pytest --force-regen)"


def _finite_nonnegative(path: Path, where: str, v: float | None) -> None:
    import math

    if v is not None and not (math.isfinite(v) and v >= 0):
        raise _refuse(path, f"{where} must be a finite number >= 0, got {v}", GOLDEN_FIX)


def read_golden(path: str | Path, within: str | Path | None = None) -> GoldenFile:
    """One golden file, strictly: its schema, its format version, tolerances finite and >= 0."""
    path = Path(path)
    golden = read(path, GoldenFile, GOLDEN_FIX, within)
    check_format(path, golden.format, GOLDEN_FORMAT, "golden file")
    for name, tol in golden.tolerances.items():
        if tol.abs is None and tol.rel is None:
            raise _refuse(path, f"field tolerances.{name} has neither 'abs' nor 'rel'", GOLDEN_FIX)
        _finite_nonnegative(path, f"field tolerances.{name}.abs", tol.abs)
        _finite_nonnegative(path, f"field tolerances.{name}.rel", tol.rel)
    return golden
