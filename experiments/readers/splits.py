"""Splits files (``<out>/splits/<category>.json``): their schema is ``ad_core.data.splits.Splits``
(with its ``SplitsHeader``), the type that writes them."""

from __future__ import annotations

from pathlib import Path

from ad_core.data.records import open_regular, parse_json, refuse
from ad_core.data.splits import FORMAT as SPLITS_FORMAT
from ad_core.data.splits import Splits

SPLITS_FIX = "delete it to remake it (or choose another --out)"


def read_splits(path: str | Path) -> Splits:
    """A splits file (``ad_core.data.splits.save_splits``), strictly, as ``Splits``."""
    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    if isinstance(value, dict) and value.get("format") != SPLITS_FORMAT:
        raise refuse(path, f"is not an ad-repro splits file (format {str(value.get('format'))[:40]!r}, "
                           f"expected {SPLITS_FORMAT!r})", SPLITS_FIX)
    return Splits.from_json(path, value, SPLITS_FIX)
