"""Published results as data (``experiments/published/*.json``), with sources and bands, per benchmark.

A source file holds its citation (paper + table, or repository + file + commit), how it was
transcribed and checked, the definition of each metric where it matters (PRO's integration
limit), a **band** per metric (how far a faithful reproduction may land from the published
value, and why) and one table per published setting: its id, the method, the setting in this
suite's vocabulary (backbone, weights, resize/crop, split, the method's parameters) and the
per-category values as fractions.  ``mvtec_ad_counts.json`` holds each category's test-set
sizes, from which a band's granularity part is computed (docs/protocol.md §12); ``layout_counts.json`` the
other benchmarks' counts.  A table's benchmark is its setting's ``dataset`` (a layout's name; MVTec AD's
where none is given).  ``unreferenced.json`` says, per benchmark, what was searched where no table exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PUBLISHED = Path(__file__).resolve().parents[1] / "published"
SOURCE_FILES = ("patchcore_paper.json", "padim_paper.json", "anomalib.json", "ader.json", "ader_more.json")
COUNTS_FILE = "mvtec_ad_counts.json"
LAYOUT_COUNTS = "layout_counts.json"
UNREFERENCED = "unreferenced.json"
MVTEC_AD = "mvtec"  # the benchmark of a table whose setting names none
MVTEC_AD_CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                       "screw", "tile", "toothbrush", "transistor", "wood", "zipper")


@dataclass(frozen=True)
class Band:
    """Allowed |measured - published|: ``abs``, or more where the test set is coarser.

    ``pairs``: that many swapped (normal, defective) pairs of the category's test set
    (AUROC moves 1/(n_good n_defect) per swap); ``images``: that many test images crossing
    a threshold (F1 moves about 1/n_test per image).
    """

    abs: float
    why: str
    pairs: float | None = None
    images: float | None = None

    def allowed(self, counts: dict[str, int]) -> float:
        n_good, n_defect = counts["test_good"], counts["test_defect"]
        parts = [self.abs]
        if self.pairs:
            parts.append(self.pairs / (n_good * n_defect))
        if self.images:
            parts.append(self.images / (n_good + n_defect))
        return max(parts)

    def rule(self) -> str:
        extra = [f"{self.pairs:g} swapped pairs" if self.pairs else "",
                 f"{self.images:g} images crossing tau" if self.images else ""]
        return " or ".join([f"{self.abs:g}", *[e for e in extra if e]])


@dataclass(frozen=True)
class ReferenceTable:
    """One published setting: per-category values of one method, with its source and bands."""

    id: str
    name: str
    method: str
    setting: dict[str, object]
    values: dict[str, dict[str, float]]  # category -> metric -> value
    source: dict[str, str]
    where: str
    bands: dict[str, Band]
    definitions: dict[str, str]
    setting_notes: str
    published_means: dict[str, float | None]  # the source's own averages (an integrity check of the values)

    def citation(self) -> str:
        return f"{self.source['citation'].rstrip('.')}; {self.where}"

    @property
    def benchmark(self) -> str:
        """The benchmark (a layout's name) its values are of."""
        return str(self.setting.get("dataset", MVTEC_AD))


def _read(name: str) -> dict:
    path = PUBLISHED / name
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"cannot read the published references {path}: {exc}. Reinstall ad-repro "
                           "(the files ship inside the experiments package).") from exc


@cache
def load_tables() -> dict[str, ReferenceTable]:
    """Every published table by id, in the files' order."""
    tables: dict[str, ReferenceTable] = {}
    for name in SOURCE_FILES:
        doc = _read(name)
        bands = {metric: Band(**b) for metric, b in doc["bands"].items()}
        for t in doc["tables"]:
            tables[t["id"]] = ReferenceTable(
                t["id"], t["name"], t["method"], t["setting"], t["values"], doc["source"],
                t.get("where", doc["source"]["where"]), bands, doc["metric_definitions"], doc["setting_notes"],
                t["published_means"])
    return tables


@cache
def mvtec_counts() -> dict[str, dict[str, int]]:
    """Per MVTec AD category: train_good, test_good, test_defect (the published data's sizes)."""
    return _read(COUNTS_FILE)["counts"]


@cache
def published_counts(layout: str) -> tuple[dict[str, dict[str, int]], str]:
    """({category: {count name: n}}, source) of a benchmark's official copy ({} where none is recorded)."""
    book = _read(LAYOUT_COUNTS)
    entry = book.get(layout)
    if entry and "counts_of" in entry:  # a form of another benchmark's copy with its counts (VisA converted)
        entry = book[entry["counts_of"]]
    if entry and "file" in entry:  # a benchmark whose counts have a file of their own (MVTec AD's)
        doc = _read(entry["file"])
        return doc["counts"], doc["source"]["citation"]
    return (entry["counts"], entry["source"]) if entry else ({}, "")


def unreferenced(benchmark: str, multi_class: bool = False) -> str | None:
    """What was searched for a benchmark without a published table here, and why none is used (None: no note):
    the benchmark's own note, else the note on one-model-per-class tables."""
    notes = _read(UNREFERENCED)
    return notes["benchmarks"].get(benchmark) or (None if multi_class else notes["single_class"])
