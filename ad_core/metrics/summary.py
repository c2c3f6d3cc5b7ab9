"""Aggregation of per-class metrics."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def macro_mean(per_class: Mapping[str, Mapping[str, float | None]]) -> dict[str, float | None]:
    """Unweighted mean over classes of every numeric metric.

    A metric that is absent (None) for any class is None in the mean too: averaging over
    a subset of classes would silently compare different things.
    """
    if not per_class:
        raise ValueError("macro_mean needs at least one class.")
    keys = [k for k in next(iter(per_class.values()))]
    out: dict[str, float | None] = {}
    for key in keys:
        values = [m.get(key) for m in per_class.values()]
        if any(v is None for v in values):
            out[key] = None
        elif all(isinstance(v, (int, float)) for v in values):
            out[key] = float(np.mean(values))
    return out
