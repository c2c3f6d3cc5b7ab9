"""Plain names: the one check of every path part built from a file's content or an option.  (The strict
reader's machinery, regular files only, bounded JSON, strict schemas, is ``ad_core.data.records``.)"""

from __future__ import annotations

from ad_core.errors import FileFormatError


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
