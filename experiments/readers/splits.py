"""Splits files (``<out>/splits/<category>.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from experiments.readers.core import (
    Count,
    Strict,
    convert,
    open_regular,
    parse_json,
    refusal,
)

# -- splits files: <out>/splits/<category>.json ----------------------------------------------
SPLITS_FORMAT = "ad-repro-splits/1"
SPLITS_FIX = "delete it to remake it (or choose another --out)"


class SplitsFile(Strict):
    format: str
    category: str
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    train: list[str]
    val_normal: list[str]
    val_anomalous: list[str]
    test_normal: list[str]
    test_anomalous: list[str]
    protocol: str = "study"
    source: str | None = None
    rule: str | None = None
    counts: dict[str, Count] | None = None


def read_splits(path: str | Path):
    """A splits file (``ad_core.data.splits.save_splits``), strictly, as ``Splits``."""
    from ad_core.data.splits import PROTOCOLS, Splits

    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    if isinstance(value, dict) and value.get("format") != SPLITS_FORMAT:
        raise refusal(path, f"is not an ad-repro splits file (format {str(value.get('format'))[:40]!r}, "
                            f"expected {SPLITS_FORMAT!r})", SPLITS_FIX)
    parsed = convert(path, value, SplitsFile, SPLITS_FIX)
    if parsed.protocol not in PROTOCOLS:
        raise refusal(path, f"field protocol {parsed.protocol[:40]!r} is not one of {', '.join(PROTOCOLS)}",
                      SPLITS_FIX)
    for name in ("train", "val_normal", "val_anomalous", "test_normal", "test_anomalous"):
        for rel in getattr(parsed, name):
            parts = rel.split("/")
            if len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\0" in rel:
                raise refusal(path, f"field {name} holds {rel[:60]!r}, not a path inside the category", SPLITS_FIX)
    return Splits(category=parsed.category, seed=parsed.seed, train=list(parsed.train),
                  val_normal=list(parsed.val_normal), val_anomalous=list(parsed.val_anomalous),
                  test_normal=list(parsed.test_normal), test_anomalous=list(parsed.test_anomalous),
                  protocol=parsed.protocol, source=parsed.source)
