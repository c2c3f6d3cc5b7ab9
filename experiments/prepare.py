"""Data preparation shared by every scenario: dataset root, splits, MVTec-Shift copy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ad_core import SEED
from ad_core.data.embedded import CATEGORIES as EMBEDDED_CATEGORIES
from ad_core.data.embedded import make_embedded_dataset
from ad_core.data.layout import CategoryFiles, discover_category, list_categories
from ad_core.data.splits import Splits, load_splits, make_splits, save_splits
from ad_core.errors import DatasetError
from ad_core.shift import write_shifted_category
from ad_core.shift.generate import PARAMS_LOG
from ad_core.timing import phase
from experiments.config import BUILT_IN
from experiments.fingerprint import fingerprint, note_if_stale


@dataclass(frozen=True)
class PreparedCategory:
    clean: CategoryFiles
    shifted: CategoryFiles | None  # None: no scenario of the run uses the shifted domain
    splits: Splits




@phase("data: built-in dataset copy")
def resolve_data_root(data: str | Path | None, out: Path, dataset: str = "embedded",
                      seed: int = SEED) -> tuple[Path, str]:
    """(root, dataset name): the user's folder, or a built-in dataset written under ``out``.

    Built-in: ``embedded`` (made from scikit-image's photographs) or ``elpv`` (the PyPI
    ``elpv-dataset`` solar cells, optional extra).
    """
    if data is not None:
        root = Path(data).expanduser().resolve()
        return root, root.name
    stamp = fingerprint("data")
    if dataset == "elpv":
        from ad_core.data.elpv import MARKER, make_elpv_dataset

        note_if_stale(out / "data" / "elpv" / MARKER, "stamp", stamp, "ELPV copy")
        return make_elpv_dataset(out / "data" / "elpv", seed, stamp=stamp), "elpv"
    if dataset != "embedded":
        raise DatasetError(f"Unknown built-in dataset {dataset!r}; choose from {BUILT_IN} or pass --data.")
    from ad_core.data.embedded import MARKER

    note_if_stale(out / "data" / "embedded" / MARKER, "stamp", stamp, "embedded dataset")
    return make_embedded_dataset(out / "data" / "embedded", stamp=stamp), "embedded"


def prepare_category(root: Path, category: str, out: Path, seed: int, progress: bool = True,
                     protocol: str = "study", shifted: bool = True) -> PreparedCategory:
    """Discover ``category``, make or reuse its splits (``protocol``: ``study`` or ``full_test``), and
    write its shifted copy (unless ``shifted`` is False: no scenario of the run needs it)."""
    clean = discover_category(root, category)
    split_path = out / "splits" / f"{category}.json"
    fresh = make_splits(clean, seed, protocol)
    if split_path.is_file():
        stored = load_splits(split_path)
        if stored != fresh:
            raise DatasetError(
                f"{split_path} holds splits that differ from the ones seed {seed} gives on "
                f"{clean.path} (another seed or other data). Use a new --out, or delete the "
                "file to replace it."
            )
    else:
        save_splits(fresh, split_path)
    if not shifted:
        return PreparedCategory(clean, None, fresh)
    shift_root = out / "data" / f"{root.name}-shift"
    stamp = fingerprint("shift")
    note_if_stale(shift_root / category / PARAMS_LOG, "stamp", stamp, f"shifted copy of {category}")
    with phase("shift generation"):
        write_shifted_category(clean, shift_root, seed=seed, progress=progress, stamp=stamp)
    shifted = discover_category(shift_root, category)
    return PreparedCategory(clean, shifted, fresh)


def default_categories(root: Path, dataset: str, built_in: bool) -> list[str]:
    """The built-in dataset's categories in their documented order, else every category on disk.

    ``built_in`` (no --data given) matters: a user's folder that happens to be named
    "embedded" or "elpv" is listed from disk like any other.
    """
    if not built_in:
        dataset = ""
    if dataset == "embedded":
        return list(EMBEDDED_CATEGORIES)
    if dataset == "elpv":
        from ad_core.data.elpv import CATEGORIES as ELPV_CATEGORIES

        return list(ELPV_CATEGORIES)
    cats = list_categories(root)
    if not cats:
        raise DatasetError(f"No category folders (with train/good/) found under {root}.")
    return cats
