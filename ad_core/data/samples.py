"""The sample types every layout reader produces and every scenario, cache and report reads.

A ``Sample`` is one image with its label, defect and mask; ``CategoryFiles`` all images of one
category, listed by a reader of ``ad_core.data.layouts`` with relative names in MVTec AD's form
(``train/good/x``, ``test/<defect>/x``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMAL = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a category.

    ``relpath`` is relative to the category folder (e.g. ``test/crack/003.png``) and is
    what splits store; ``mask`` is None for normal images and image-level-only datasets.
    """

    relpath: str
    path: Path
    label: int  # 0 normal, 1 anomalous
    defect: str  # "good" for normal images
    mask: Path | None = None  # a mask file, or a folder of masks whose union is the defect (MVTec LOCO)
    bits: int | None = None  # a 16-bit container's bit depth (its category's); None: an 8-bit image
    mask_values: str = "binary"  # "binary": 0 and one value; "labels": any non-zero value is defect (VisA ids)


@dataclass(frozen=True)
class Capabilities:
    """What a benchmark has beyond MVTec AD's layout, declared by its ``Layout`` record
    (``ad_core.data.layouts``) and carried on its ``CategoryFiles``: code asks these, never a layout's name.

    The defaults are MVTec AD's (and every layout that shares its reader without more)."""

    official_split: bool = False  # a split file may set its train / test sets, and its published counts are theirs
    by_defect_type: bool = False  # metrics reported for each defect type apart (MVTec LOCO: logical, structural)
    validation_set: bool = False  # an official validation set of normal images (validation/good/)
    unscored_sets: bool = False  # test sets without public labels: scored only, no metric claimed (MVTec AD 2)
    region_masks: bool = False  # several masks per image, one per defect region: their union is the defect
    # the benchmark's own official measures beyond the common ones (ad_core.metrics names; docs/official_measures.md)
    measures: tuple[str, ...] = ()
    # masks are maps of defect-class ids (0 background, 1..k a class: VisA's): any non-zero value is defect; a
    # layout without it keeps MVTec AD's rule (0 and one value, anything else refused as non-binary)
    class_id_masks: bool = False

    @property
    def mask_values(self) -> str:
        """How its masks' values are read (``Sample.mask_values``, ``ad_core.data.io.read_mask``)."""
        return "labels" if self.class_id_masks else "binary"


@dataclass(frozen=True)
class CategoryFiles:
    """All files of one category, each list sorted by relative path."""

    root: Path
    name: str
    train_good: list[Sample]
    test_good: list[Sample]
    test_anomalous: list[Sample]
    has_masks: bool = True
    defects: list[str] = field(default_factory=list)
    # Optional ``<category>/uncertain/<group>/*``: images of unsure label (e.g. ELPV's
    # p=1/3, 2/3 cells), never trained on nor in the study's metrics; label 1, defect = group.
    uncertain: list[Sample] = field(default_factory=list)
    bit_depth: int | None = None  # of its 16-bit-container images (None: it has none): ad_core.data.bit_depth
    bit_depth_exceptions: dict[str, str] = field(default_factory=dict)  # {image or set: read otherwise, why}
    # An official validation set of normal images (``validation/good/``: MVTec AD 2, MVTec LOCO): it
    # calibrates tau, and train/good all trains (ad_core.data.splits)
    val_good: list[Sample] = field(default_factory=list)
    # Images without public labels, scored only (MVTec AD 2's test_private, test_private_mixed): {set: samples}
    unlabelled: dict[str, list[Sample]] = field(default_factory=dict)
    layout: str = "mvtec"  # the reader that listed it (ad_core.data.layouts): for messages and records
    capabilities: Capabilities = field(default_factory=Capabilities)  # its layout's: what code may ask of it
    split_source: str | None = None  # an official split file the train/test sets come from (VisA's 1cls.csv)
    defects_config: Path | None = None  # each defect type's pixel value and saturation (MVTec LOCO's sPRO)
    # the rule, in words, by which the reader itself held normal images out for testing (VisA without its split
    # file); declared once by the layout, recorded in the splits file, provenance.json and report.md
    holdout: str | None = None

    @property
    def path(self) -> Path:
        return self.root / self.name

    def by_relpath(self) -> dict[str, Sample]:
        return {s.relpath: s for s in self.all_samples()}

    def all_samples(self) -> list[Sample]:
        """Every labelled image (the unlabelled ones are scored apart: ``unlabelled``)."""
        return self.train_good + self.val_good + self.test_good + self.test_anomalous + self.uncertain
