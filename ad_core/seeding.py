"""Deterministic per-item random generators."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded from ``parts`` (e.g. seed, category, file name).

    Uses SHA-256 rather than Python's ``hash`` (salted per process), so the stream is the
    same on every run and machine.
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
