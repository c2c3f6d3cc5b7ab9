"""Seeded train/val/test splits of one category (docs/protocol.md §2), stored as JSON of file names.

Rule: train = first ``floor(0.8 * n_good_train)`` of a seeded permutation of the sorted
``train/good`` files, val normals = the rest; val anomalies = first ``floor(0.3 * n_anom)``
of one seeded permutation of the category's sorted anomalous files (all defect types
together), test anomalies = the rest; test normals = all of ``test/good``.  Each pool has
its own ``numpy.random.default_rng(seed)`` so one pool's size never changes the other's
draw.

The papers' protocol (``full_test``, docs/protocol.md §12): train on all of ``train/good``,
evaluate on all of ``test``; with no validation split, tau is calibrated on the test set
itself (anomalib's default), so only the tau-free metrics are comparable to a paper.

Where a layout's reader itself held normal images out for testing (VisA without its split file), its
rule in words (``CategoryFiles.holdout``) is kept as ``holdout`` and stated first in the file's ``rule``;
a file without one is written without the field, byte for byte as before.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import AfterValidator, Field

from ad_core import SEED
from ad_core.data.io import write_json
from ad_core.data.records import Count, Strict, absent, convert
from ad_core.data.samples import CategoryFiles, Sample
from ad_core.errors import DatasetError

FORMAT = "ad-repro-splits/1"
TRAIN_FRACTION = 0.8
VAL_ANOMALY_FRACTION = 0.3
log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val_normal", "val_anomalous", "test_normal", "test_anomalous")
Protocol = Literal["study", "full_test"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)


def _inside_category(rel: str) -> str:
    """A file name relative to the category folder: ``train/good/000.png``, never ``../x`` or ``/x``."""
    parts = rel.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts) or "\\" in rel or "\0" in rel:
        raise ValueError("is not a path inside the category")
    return rel


RelPath = Annotated[str, AfterValidator(_inside_category)]


class SplitsHeader(Strict):
    """What a splits file says before its splits: its format, and the rule and counts for a human reader."""

    format: str
    rule: str | None = None
    counts: dict[str, Count] | None = None


class Splits(Strict):
    """File names (relative to the category folder) of each split of one category; with its header
    (``to_json`` / ``from_json``), the splits file ``<out>/splits/<category>.json``."""

    category: str
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)]
    train: list[RelPath]
    val_normal: list[RelPath]
    val_anomalous: list[RelPath]
    test_normal: list[RelPath]
    test_anomalous: list[RelPath]
    protocol: Protocol = "study"  # "full_test": val = test (no validation split), train = all train/good
    # where train/val/test come from when not (only) the study's rule: "validation/good" (an official
    # validation set of normals), "split_csv/1cls.csv" (VisA's official split, val carved by the rule)
    source: str | None = Field(None, exclude_if=absent)
    # the rule by which the layout's reader held normal images out for testing, in its words (VisA without its
    # split file: ``CategoryFiles.holdout``); left out where there is none, so older files keep their bytes
    holdout: str | None = Field(None, exclude_if=absent)

    def to_json(self) -> dict[str, Any]:
        """The splits file's JSON: the header (``SplitsHeader``), then these fields."""
        header = SplitsHeader(format=FORMAT, rule=rule_of(self), counts=self.counts())
        return {**header.to_json(), **super().to_json()}

    @classmethod
    def from_json(cls, path: str | Path, value: object, fix: str) -> Splits:
        """A splits file's parsed JSON as ``Splits``, strictly: the header's keys held to ``SplitsHeader``,
        the others to ``Splits`` (FileFormatError naming ``path``, the field and ``fix``)."""
        if not isinstance(value, dict):
            return convert(path, value, cls, fix)  # refused: the top level is not an object
        head = SplitsHeader.model_fields
        convert(path, {k: v for k, v in value.items() if k in head}, SplitsHeader, fix)
        return convert(path, {k: v for k, v in value.items() if k not in head}, cls, fix)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}

    def val(self) -> list[str]:
        return self.val_normal + self.val_anomalous

    def test(self) -> list[str]:
        return self.test_normal + self.test_anomalous

    def samples(self, files: CategoryFiles, names: list[str]) -> list[Sample]:
        """Resolve relative names against a discovered category (the same or a shifted copy)."""
        index = files.by_relpath()
        missing = [n for n in names if n not in index]
        if missing:
            raise DatasetError(
                f"The splits of {self.category!r} list {len(missing)} file(s) that are not in "
                f"{files.path} (first: {missing[0]}). The data changed since the splits were "
                "made: delete the splits file to make new ones, or restore the files."
            )
        return [index[n] for n in names]


def _seeded_order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def split_sizes(n_good_train: int, n_anomalous: int) -> dict[str, int]:
    """Sizes of train / val_normal / val_anomalous / test_anomalous from the §2 rule."""
    n_train = math.floor(TRAIN_FRACTION * n_good_train)
    n_val_anom = math.floor(VAL_ANOMALY_FRACTION * n_anomalous)
    return {
        "train": n_train,
        "val_normal": n_good_train - n_train,
        "val_anomalous": n_val_anom,
        "test_anomalous": n_anomalous - n_val_anom,
    }


def make_splits(files: CategoryFiles, seed: int = SEED, protocol: str = "study") -> Splits:
    """Apply the §2 rule (or ``full_test``) to a discovered category; raise if a split would be empty."""
    good = [s.relpath for s in files.train_good]
    anomalous = [s.relpath for s in files.test_anomalous]
    where = files.path
    if protocol == "full_test":
        return _full_test_splits(files, seed, good, anomalous)
    if protocol != "study":
        raise ValueError(f"unknown split protocol {protocol!r}; choose from {PROTOCOLS}")
    if files.val_good:
        return _official_validation_splits(files, seed, good, anomalous)
    sizes = split_sizes(len(good), len(anomalous))
    if sizes["train"] == 0 or sizes["val_normal"] == 0:
        raise DatasetError(
            f"{where}/train/good has {len(good)} image(s): the 80/20 split needs at least 2 "
            "(one to train on, one to validate). Add normal training images."
        )
    if sizes["val_anomalous"] == 0:  # 0 to 3 anomalies: none to calibrate on (the normal-only rule sets tau)
        log.warning("%s/test has %d anomalous image(s): 30%% of them would calibrate tau, so none does; tau comes "
                    "from the validation normals (the normal-fpr rule, ad_core.thresholds)%s", where, len(anomalous),
                    "" if anomalous else ", and the metrics that need anomalies are undefined")
    good_order = _seeded_order(len(good), seed)
    anom_order = _seeded_order(len(anomalous), seed)
    good_perm = [good[i] for i in good_order]
    anom_perm = [anomalous[i] for i in anom_order]
    return Splits(
        category=files.name,
        seed=seed,
        train=good_perm[: sizes["train"]],
        val_normal=good_perm[sizes["train"]:],
        val_anomalous=anom_perm[: sizes["val_anomalous"]],
        test_normal=[s.relpath for s in files.test_good],
        test_anomalous=anom_perm[sizes["val_anomalous"]:],
        source=files.split_source,
        holdout=files.holdout,
    )


def _official_validation_splits(files: CategoryFiles, seed: int, good: list[str], anomalous: list[str]) -> Splits:
    """A benchmark's own validation set of normals (MVTec AD 2, MVTec LOCO): every train/good image trains,
    validation/good calibrates tau (with no anomaly: the normal-only rule), the whole test set tests."""
    return Splits(category=files.name, seed=seed, train=good, val_normal=[s.relpath for s in files.val_good],
                  val_anomalous=[], test_normal=[s.relpath for s in files.test_good], test_anomalous=anomalous,
                  source="validation/good", holdout=files.holdout)


def _full_test_splits(files: CategoryFiles, seed: int, good: list[str], anomalous: list[str]) -> Splits:
    """Train on every ``train/good`` image, test (and calibrate tau) on the whole test set."""
    if not anomalous:
        raise DatasetError(f"{files.path}/test has no anomalous image: the full-test protocol needs at least one "
                           "under test/<defect>/.")
    test_normal = [s.relpath for s in files.test_good]
    return Splits(category=files.name, seed=seed, train=good, val_normal=test_normal, val_anomalous=anomalous,
                  test_normal=test_normal, test_anomalous=anomalous, protocol="full_test", holdout=files.holdout)


def rule_of(splits: Splits) -> str:
    """The rule that made ``splits``, in words (a splits file states it for a human reader): the study's, and
    before it the reader's hold-out rule where the data's own folders did not set train/good and test/good."""
    if splits.holdout:
        return f"train/good and test/good held out by the data's reader: {splits.holdout}; then {_rule(splits)}"
    return _rule(splits)


def _rule(splits: Splits) -> str:
    if splits.source == "validation/good":
        return ("the benchmark's own validation set: train = all of train/good; val = validation/good (normals "
                "only: tau by the normal-only rule); test = all of test")
    if splits.source:
        return (f"the official split {splits.source}: its train normals and test images, the validation carved "
                f"by the study's rule ({TRAIN_FRACTION:.0%}/rest of its train normals, {VAL_ANOMALY_FRACTION:.0%} "
                "of its test anomalies); the official test images that remain are test_normal + test_anomalous")
    if splits.protocol == "study":
        return (f"train/val_normal = {TRAIN_FRACTION:.0%}/rest of a seeded permutation of sorted "
                f"train/good; val/test anomalous = {VAL_ANOMALY_FRACTION:.0%}/rest of a seeded "
                "permutation of sorted test/<defect>; test_normal = test/good")
    return ("full test set (the papers' protocol): train = all of train/good; test = all of test; "
            "val = test (no validation split: tau is calibrated on the test set)")


def save_splits(splits: Splits, path: str | Path) -> None:
    """Write splits as JSON (atomically), with the rule and counts for a human reader."""
    write_json(path, splits.to_json())
