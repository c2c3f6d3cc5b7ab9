"""The bit depth a category's 16-bit-container images are read at (docs/protocol.md §1).

A 16-bit PNG or TIFF may hold 8-, 10-, 12-, 14- or 16-bit camera values; ``io.read_image`` maps
``0 .. 2^b - 1`` to ``0 .. 255``.  One rule, that no single image can turn:

- an image's **own depth** is the smallest of ``io.BIT_DEPTHS`` holding all of its values except its
  brightest ``max(1, n // 10,000)`` pixels (hot pixels never decide a depth);
- the category's **depth** is the largest own depth of its **training images** (the reference the model
  learns; where none is a 16-bit container, of its labelled test/validation images; never of the
  unscored ones: MVTec AD 2's private sets, uncertain images), so a dark 12-bit image still reads at
  12 bits beside bright ones;
- every image is read at the category's depth, or at its own where that is larger (an image saved at
  another depth than the training images: named); values above the depth an image is read at saturate
  at 255 (hot pixels: named).  Each contradiction is said in one line per category and recorded in
  ``provenance.json`` (``image_bit_depth_exceptions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ad_core.data.io import BIT_DEPTHS, decode_wide

HOT_PIXELS_PER = 10_000  # an image's brightest max(1, n // 10,000) pixels never decide its depth
RULE = ("training images' depth (each image's all but its brightest max(1, n/10,000) pixels); an image read at "
        "its own depth where larger, values above the depth read at saturate")


@dataclass(frozen=True)
class ImageDepth:
    """What an image's values say about its depth: ``above[b]`` pixels exceed ``2^b - 1``, of ``n``."""

    n: int
    above: dict[int, int]

    @property
    def allowance(self) -> int:
        return max(1, self.n // HOT_PIXELS_PER)

    @property
    def own(self) -> int:
        return next((b for b in BIT_DEPTHS if self.above[b] <= self.allowance), BIT_DEPTHS[-1])


def measure(values: np.ndarray) -> ImageDepth:
    """The ``ImageDepth`` of an image's integer values (any shape)."""
    return ImageDepth(int(values.size), {b: int(np.count_nonzero(values > 2**b - 1)) for b in BIT_DEPTHS})


@dataclass(frozen=True)
class CategoryDepth:
    """The depth of a category (``depth``) and each 16-bit image's reading depth (``read_at``), with the
    images that contradict the category's depth in words (``exceptions``: {name: why})."""

    depth: int
    read_at: dict[Path, int]
    exceptions: dict[str, str]


def decide(measured: dict[Path, ImageDepth], reference: list[Path], names: dict[Path, str],
           sets: dict[str, list[Path]] | None = None) -> CategoryDepth:
    """The rule of the module docstring over ``measured`` (every 16-bit image of a category), its depth
    from ``reference`` (the training images, or the labelled scored ones; all when none is given).

    ``sets``: the other sets read beside the training images ({"test": paths, ...}); a whole set whose
    images all hold fewer bits than the training images (saved at another depth, or all very dark) is
    named too (as "<set> images"): it is read at the training images' depth."""
    pool = [measured[p] for p in reference if p in measured] or list(measured.values())
    depth = max(m.own for m in pool)
    read_at, exceptions = {}, {}
    for name, paths in (sets or {}).items():
        own = [measured[p].own for p in paths if p in measured]
        if own and len(own) == len(paths) and max(own) < depth:
            exceptions[f"{name} images"] = (f"all {len(own)} hold values of at most {max(own)} bits: read at the "
                                            f"training images' {depth} bits")
    for path, m in sorted(measured.items()):
        read_at[path] = max(depth, m.own)
        saturated = m.above[read_at[path]]
        if m.own > depth:
            exceptions[names[path]] = f"{m.own}-bit values: read at its own {m.own}-bit depth"
        elif saturated:
            exceptions[names[path]] = f"{saturated} pixel(s) above {2**depth - 1}: saturated"
    return CategoryDepth(depth, read_at, exceptions)


def measure_file(path: Path) -> ImageDepth:
    """``measure`` of a 16-bit-container image file (decoded once)."""
    return measure(decode_wide(path))
