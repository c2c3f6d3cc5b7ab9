"""The strict reader's machinery: regular files only, bounded JSON, strict schemas, plain names
(the package docstring says what and why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ad_core.data.records import (  # noqa: F401  (re-exported: the readers' one machinery)
    MAX_BYTES,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    one_line,
    open_regular,
    parse_json,
    refusal,
)
from ad_core.errors import FileFormatError  # noqa: F401  (re-exported)

T = TypeVar("T")


def _shown(part: object) -> str:
    """A field name or key as a message shows it: as it is when printable, else JSON-quoted (one line)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else json.dumps(text)


def _union_tag(part: object) -> bool:
    """Whether a pydantic error location part names a member of a union (``UncertainGroupFile``,
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
        raise refusal(Path(path), describe_error(exc), fix) from None


def read(path: str | Path, schema: type[T], fix: str, within: str | Path | None = None,
         max_bytes: int = MAX_BYTES) -> T:
    """Open, parse and convert one handed-over file (the three steps of this module's docstring)."""
    return convert(path, parse_json(path, open_regular(path, within, max_bytes)), schema, fix)


def check_format(path: str | Path, found: int, known: int, what: str) -> None:
    """An unknown ``format`` version is named: ``found`` newer (or older) than the ``known`` one."""
    if found != known:
        raise refusal(Path(path), f"is a {what} of format {found}; this version of ad-repro reads format {known}",
                      "record it again with this version (or use the version that wrote it)")


class Strict(BaseModel):
    """A schema: exact types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _SCHEMAS.add(cls.__name__)


_SCHEMAS: set[str] = set()  # the schemas' names, which pydantic puts in a union member's error location


def _number(v: object) -> object:
    """A JSON number (NaN / infinities included) or null; never a boolean or a string."""
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise ValueError(f"must be a number or null, got {type(v).__name__}")


Number = Annotated[object, BeforeValidator(_number)]  # one message, not one per member of int | float
Count = Annotated[int, Field(ge=0)]  # a count of images or files


# -- names built into paths -------------------------------------------------------------------
def plain_name(value: object, what: str, source: str) -> str:
    """``value`` when it is one plain file-name component (no separator, no '.' / '..', no NUL, not
    empty, UTF-8-encodable, at most 255 bytes), else ``FileFormatError`` naming ``source`` and ``what``.

    The one check of every path part built from a file's content or an option (scenario, category,
    file names): ``run``, ``prepare``, ``golden record``, ``compare``, report and artifacts."""
    ok = isinstance(value, str) and value not in ("", ".", "..") and not any(c in value for c in "/\\\0")
    if ok:
        try:
            ok = len(value.encode("utf-8")) <= 255
        except UnicodeEncodeError:
            ok = False
    if not ok:
        raise FileFormatError(f"{source}: {what} {str(value)[:60]!r} is not one plain name (no '/', '\\', "
                              "'.' or '..', at most 255 bytes of UTF-8); rename it")
    return value  # type: ignore[return-value]
