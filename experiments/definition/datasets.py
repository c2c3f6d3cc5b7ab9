"""What data a run reads: the built-in datasets and the domains, each a registry record.

A built-in dataset is what a run reads without ``--data``: a copy written under ``<out>/data/<name>``
from what installs offline (``embedded``: scikit-image's photographs; ``elpv``: the PyPI
``elpv-dataset`` solar cells), read with one of ``ad_core.data.layouts``.  A domain is a form of
every category's images a scenario fits, calibrates or evaluates on: ``clean`` (the data as read)
or a copy derived from it (``shift``: MVTec-Shift, ``ad_core.shift``).  Adding either is one record
here (the CLI's choices, validation and the runner follow).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltIn:
    """A dataset written from what installs offline."""

    name: str
    description: str
    module: str  # the ad_core module with MARKER, CATEGORIES and the writer
    writer: str  # its function: (root, seed=..., stamp=...) -> the written root
    layout: str  # how the written copy is read (ad_core.data.layouts)
    seeded: bool  # the copy depends on the run's seed

    def categories(self) -> list[str]:
        """The categories in their documented order."""
        return list(importlib.import_module(self.module).CATEGORIES)

    def write(self, root: Path, seed: int, stamp: object) -> Path:
        """Write (or keep, where complete and current) the copy under ``root``; return it."""
        module = importlib.import_module(self.module)
        write = getattr(module, self.writer)
        return write(root, seed, stamp=stamp) if self.seeded else write(root, stamp=stamp)

    def marker(self) -> str:
        """The file of the copy that records what wrote it."""
        return importlib.import_module(self.module).MARKER


BUILT_IN: dict[str, BuiltIn] = {b.name: b for b in (
    BuiltIn("embedded", "made from scikit-image's photographs (installs with the suite)",
            "ad_core.data.embedded", "make_embedded_dataset", "mvtec", seeded=False),
    BuiltIn("elpv", "real solar-cell EL images, image labels only (pip install 'ad-repro[elpv]')",
            "ad_core.data.elpv", "make_elpv_dataset", "image_level", seeded=True),
)}


@dataclass(frozen=True)
class Domain:
    """A form of the data scenarios name (``Scenario.fit_domain`` ...)."""

    name: str
    description: str
    writer: str | None = None  # "module:function" writing one category's copy; None: the data as read
    copy: str = ""  # what messages call a category's copy ("shifted copy")

    @property
    def derived(self) -> bool:
        return self.writer is not None

    def write(self, files: object, out_root: Path, seed: int, progress: bool, stamp: object) -> Path:
        """Write (or keep, where complete and current) the copy of one category (``CategoryFiles``) under
        ``out_root``: ``writer(files, out_root, seed=..., progress=..., stamp=...)``."""
        module, function = str(self.writer).split(":")
        return getattr(importlib.import_module(module), function)(files, out_root, seed=seed, progress=progress,
                                                                   stamp=stamp)


CLEAN = "clean"
DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain(CLEAN, "the data as read"),
    Domain("shift", "MVTec-Shift: each image warped, re-lit and re-contrasted by seeded parameters",
           "ad_core.shift:write_shifted_category", "shifted copy"),
)}


def derived_domains(names: set[str]) -> list[str]:
    """The domains among ``names`` that are copies to write, in registry order."""
    return [d.name for d in DOMAINS.values() if d.name in names and d.derived]
