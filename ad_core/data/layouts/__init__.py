"""The benchmarks' on-disk layouts, each one reader behind one interface (docs/protocol.md §1).

A ``Layout`` knows whether a folder holds its benchmark (``looks_like``), which categories it has and
how to list one category's files as ``CategoryFiles`` -- the same ``Sample``s every scenario, cache and
report reads, with relative names in MVTec AD's form (``train/good/x``, ``test/<defect>/x``), so that a
shifted copy is an MVTec-layout folder whatever the source.  ``detect`` names the one layout a root
holds (one line says which; a mixed or unknown folder is an error listing what was expected), and
``--layout`` forces one.  Each ``Layout`` declares its ``Capabilities`` (an official split file,
metrics by defect type, unscored test sets, ...), carried on every ``CategoryFiles`` it lists: code
outside a layout's module asks those, never a layout's name.  Adding a layout: one module with a
``discover`` function and one ``Layout`` entry below (with its capabilities); anchor: anomalib's one
``make_<dataset>_dataset`` per benchmark, read for each layout's conventions (never copied).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ad_core.data.layouts import btad, mvtec, mvtec_ad2, visa, visa_converted
from ad_core.data.layouts.listing import utf8_name
from ad_core.data.samples import Capabilities, CategoryFiles
from ad_core.errors import DatasetError

MVTEC_AD = Capabilities()  # nothing beyond MVTec AD's layout


@dataclass(frozen=True)
class Layout:
    name: str
    title: str  # the benchmark, as its paper names it
    source: str  # where its official copy comes from
    expected: str  # what a category folder holds, for the error of a folder that matches none
    looks_like: Callable[[Path], bool]  # one category folder holds this layout
    discover: Callable[[Path, str], CategoryFiles]
    categories: Callable[[Path], list[str]] | None = None  # None: the sub-folders that look like it
    names: tuple[str, ...] = ()  # the benchmark's published categories (MPDD is told from MVTec AD by them)
    capabilities: Capabilities = MVTEC_AD  # what it has beyond MVTec AD's layout; its files carry them


def _sub(path: Path, *parts: str) -> bool:
    return path.joinpath(*parts).is_dir()


def _mvtec_like(cat: Path) -> bool:
    return _sub(cat, "train", "good") and _sub(cat, "test")


MPDD_NAMES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")


def _as(name: str, capabilities: Capabilities = MVTEC_AD,
        image_level: bool = False) -> Callable[[Path, str], CategoryFiles]:
    """MVTec AD's reader for a layout that shares it (LOCO's mask folders and validation/good included),
    its files marked with the layout's name and capabilities."""
    def discover(root: Path, category: str) -> CategoryFiles:
        files = mvtec.discover_category(root, category, image_level=image_level)
        return replace(files, layout=name, capabilities=capabilities)
    return discover


LOCO = Capabilities(by_defect_type=True, validation_set=True, region_masks=True, measures=("spro",))
DEFECTS_CONFIG = "defects_config.json"  # MVTec LOCO: a category's defect types, their pixel values and saturation


def _loco(root: Path, category: str) -> CategoryFiles:
    """MVTec AD's reader on a LOCO category, with its defects_config.json (sPRO's saturation areas) where present."""
    files = _as("mvtec_loco", LOCO)(root, category)
    config = files.path / DEFECTS_CONFIG
    return replace(files, defects_config=config) if config.is_file() else files


LAYOUTS: dict[str, Layout] = {entry.name: entry for entry in (
    Layout("visa", "VisA (Zou et al. 2022)", "amazon-science/spot-diff (VisA_20220922.tar)",
           "Data/Images/Normal/, Data/Images/Anomaly/, Data/Masks/Anomaly/ (and <root>/split_csv/1cls.csv)",
           visa.looks_like, visa.discover, names=visa.OBJECTS, capabilities=visa.CAPABILITIES),
    Layout("visa_converted", "VisA (Zou et al. 2022), converted by spot-diff's prepare_data.py",
           "amazon-science/spot-diff (VisA_20220922.tar, then utils/prepare_data.py --split-type 1cls)",
           "1cls/<object>/ (or <object>/): train/good/, test/{good,bad}/, ground_truth/bad/<stem>.png",
           visa_converted.looks_like, visa_converted.discover, visa_converted.categories, names=visa.OBJECTS,
           capabilities=visa_converted.CAPABILITIES),
    Layout("mvtec_ad2", "MVTec AD 2 (Heckler-Kram et al. 2025)", "mvtec.com (mvtec_ad_2)",
           "train/good/, validation/good/, test_public/{good,bad}/, test_public/ground_truth/bad/",
           mvtec_ad2.looks_like, mvtec_ad2.discover, names=mvtec_ad2.OBJECTS, capabilities=mvtec_ad2.CAPABILITIES),
    Layout("mvtec_loco", "MVTec LOCO AD (Bergmann et al. 2022)", "mvtec.com (mvtec_loco_anomaly_detection.tar.xz)",
           "train/good/, validation/good/, test/{good,logical_anomalies,structural_anomalies}/, "
           "ground_truth/<type>/<stem>/NNN.png",
           lambda cat: _mvtec_like(cat) and (_sub(cat, "test", "logical_anomalies")
                                             or _sub(cat, "test", "structural_anomalies")),
           _loco, capabilities=LOCO,
           names=("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")),
    Layout("btad", "BTAD (Mishra et al. 2021)", "avires.dimi.uniud.it (btad.zip)",
           "train/ok/, test/{ok,ko}/, ground_truth/ko/<stem>.png|bmp", btad.looks_like, btad.discover,
           names=btad.CATEGORIES),
    Layout("mpdd", "MPDD (Jezek et al. 2021)", "github.com/stepanje/MPDD",
           "MVTec AD's: train/good/, test/good/, test/<defect>/, ground_truth/<defect>/<stem>_mask.png",
           lambda cat: _mvtec_like(cat) and cat.name in MPDD_NAMES, _as("mpdd"), names=MPDD_NAMES),
    Layout("mvtec", "MVTec AD (Bergmann et al. 2019) and any folder in its layout",
           "mvtec.com (mvtec_anomaly_detection)",
           "train/good/, test/good/, test/<defect>/, ground_truth/<defect>/<stem>_mask.png",
           lambda cat: _mvtec_like(cat) and _sub(cat, "ground_truth"), mvtec.discover_category),
    Layout("image_level", "image-labelled data (no masks: ELPV, a line's own folder)", "your own, or PyPI elpv-dataset",
           "train/good/, test/good/, test/<defect>/ and no ground_truth/",
           lambda cat: _mvtec_like(cat) and not _sub(cat, "ground_truth"), _as("image_level", image_level=True)),
)}
NAMES = ("auto", *LAYOUTS)
GENERIC = ("mvtec", "image_level")  # the readers any MVTec-like folder matches: tried last by ``detect``


def register(layout: Layout) -> Layout:
    """Add a layout (from its own module); it is tried before the generic readers, so that a folder of its
    benchmark is detected as such, and ``--layout`` accepts its name."""
    global LAYOUTS, NAMES
    if layout.name in LAYOUTS or layout.name == "auto":
        raise ValueError(f"layout {layout.name!r} is registered already")
    specific = {k: v for k, v in LAYOUTS.items() if k not in GENERIC}
    LAYOUTS = {**specific, layout.name: layout, **{k: LAYOUTS[k] for k in GENERIC}}
    NAMES = ("auto", *LAYOUTS)
    return layout


def unregister(name: str) -> None:
    """Remove a registered layout (a test's toy); the built-in ones stay."""
    global LAYOUTS, NAMES
    LAYOUTS = {k: v for k, v in LAYOUTS.items() if k != name}
    NAMES = ("auto", *LAYOUTS)


def _children(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetError(f"Data root {root} does not exist or is not a folder. Point --data / MVTEC_ROOT at the "
                           "folder that holds the category folders (e.g. .../mvtec_anomaly_detection).")
    return sorted(p for p in root.iterdir() if p.is_dir() and utf8_name(p) and not p.name.startswith("."))


def matches(root: Path) -> dict[str, list[str]]:
    """{layout: its categories} of every layout some category folder of ``root`` holds (MPDD over MVTec AD,
    LOCO over both, VisA's root split file counting for VisA)."""
    root = Path(root)
    found: dict[str, list[str]] = {}
    for cat in _children(root):
        for name, entry in LAYOUTS.items():
            if entry.looks_like(cat):
                found.setdefault(name, []).append(cat.name)
                break  # the first, most specific entry wins (LAYOUTS is ordered so)
    return found


def detect(root: str | Path, forced: str = "auto") -> Layout:
    """The layout of ``root``: ``forced`` when given (checked), else the one its categories hold.

    A root whose categories hold two layouts (MVTec AD and image-level data count as one family: a
    category without masks among masked ones) is an error naming them; one that holds none lists what
    each layout expects."""
    root = Path(root)
    if forced != "auto":
        if forced not in LAYOUTS:
            raise DatasetError(f"--layout {forced!r}: choose one of {', '.join(NAMES)}")
        return LAYOUTS[forced]
    found = matches(root)
    if not found:
        expected = "; ".join(f"{e.name}: {e.expected}" for e in LAYOUTS.values())
        raise DatasetError(f"{root} holds no category folder of a known layout. Expected per category: {expected}")
    family = set(GENERIC)  # a category without masks among masked ones: MVTec AD's own rule applies
    if set(found) <= family:
        return LAYOUTS["mvtec" if "mvtec" in found else "image_level"]
    if len(found) > 1:
        shown = "; ".join(f"{k}: {', '.join(v[:3])}" for k, v in sorted(found.items()))
        raise DatasetError(f"{root} mixes layouts ({shown}): keep one benchmark per data folder, or pass --layout")
    return LAYOUTS[next(iter(found))]


def categories(root: str | Path, layout: Layout) -> list[str]:
    """The category folders of ``root`` that hold ``layout`` (sorted)."""
    if layout.categories is not None:
        return layout.categories(Path(root))
    return sorted(cat.name for cat in _children(Path(root)) if layout.looks_like(cat)
                  or (layout.name in GENERIC and _mvtec_like(cat)))
