"""Data preparation shared by every scenario: dataset root, layout, splits, each derived domain's copy.

``prepare_run`` writes what a resolved run reads and plans its work (``experiments.execution.plan``): a
``PreparedRun``, which ``experiments.execution.runner.StudyRun`` opens without writing data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ad_core import SEED
from ad_core.data import layouts
from ad_core.data.layouts.mvtec import discover_category
from ad_core.data.samples import CategoryFiles, Sample
from ad_core.data.splits import Splits, make_splits, save_splits
from ad_core.errors import DatasetError
from ad_core.shift.generate import PARAMS_LOG
from ad_core.timing import phase
from experiments.definition.datasets import BUILT_IN, CLEAN, DOMAINS
from experiments.definition.scenarios import Scenario
from experiments.evaluation.references import published_counts
from experiments.execution.cache import file_digest
from experiments.execution.fingerprint import fingerprint, log, note_if_stale
from experiments.execution.plan import Resolved, Work, plan_work, runnable, scenario_methods
from experiments.readers import FileFormatError, plain_name, read_splits

FEW_TEST_IMAGES = 5  # normal or defective test images of a class below which its numbers are called anecdotal


@dataclass(frozen=True)
class PreparedCategory:
    domains: dict[str, CategoryFiles]  # its files in each domain the run uses: clean, and each derived copy
    splits: Splits

    @property
    def clean(self) -> CategoryFiles:
        return self.domains[CLEAN]

    def files(self, domain: str) -> CategoryFiles:
        """The category's files in ``domain``."""
        if domain not in self.domains:
            raise RuntimeError(f"no {domain} copy of {self.clean.name}: the run's scenarios did not ask for one")
        return self.domains[domain]


@dataclass(frozen=True)
class PreparedRun:
    """What ``prepare_run`` made of a resolved run: everything a ``StudyRun`` opens without writing data."""

    resolved: Resolved
    categories: list[str]
    prepared: dict[str, PreparedCategory]
    layout: str  # ad_core.data.layouts: the reader of the data
    scenarios: tuple[Scenario, ...]  # the selected scenarios with a meaning on these categories
    work: Work  # every model fit and scored split they need

    @property
    def has_masks(self) -> bool:
        return all(p.clean.has_masks for p in self.prepared.values())


def prepare_run(resolved: Resolved) -> PreparedRun:
    """Write the run's data (built-in copy, splits, each derived domain's copy) and plan its work."""
    config, out = resolved.config, resolved.out
    dataset = resolved.dataset
    root = write_data_root(resolved.root, dataset, config.data is None, config.seed)
    layout, categories = resolved.layout, list(resolved.categories)
    prepared = prepare_categories(root, list(categories), out, config.seed, config.progress, config.split,
                                  resolved.domains, layout, config.threshold)
    for c, p in prepared.items():
        counts = p.splits.counts()
        n_good, n_bad = counts["test_normal"], counts["test_anomalous"]
        if min(n_good, n_bad) < FEW_TEST_IMAGES:
            log.warning("%s: the test split holds %d normal and %d defective image(s): one swapped pair moves its "
                        "image AUROC by %.3g, so its numbers are anecdotal; add test images", c, n_good, n_bad,
                        1 / max(1, n_good * n_bad))
    scenarios = tuple(sc for sc in runnable(config, list(categories)) if scenario_methods(sc, config.methods))
    submitted = not config.resize and any(p.clean.unlabelled for p in prepared.values())
    work = plan_work(config, list(scenarios), list(categories),
                     lambda c, domain: bool(prepared[c].files(domain).uncertain), submitted)
    return PreparedRun(resolved, list(categories), prepared, layout, scenarios, work)


@phase("data: built-in dataset copy")
def write_data_root(root: Path, dataset: str, built_in: bool, seed: int = SEED) -> Path:
    """The data a run reads (``plan.data_root_of``'s root): the user's folder as it is, or the built-in dataset
    written there (``experiments.definition.datasets.BUILT_IN``: ``embedded``, made from scikit-image's
    photographs; ``elpv``, the PyPI ``elpv-dataset`` solar cells, an optional extra)."""
    if not built_in:
        return root
    stamp = fingerprint("data")
    note_if_stale(root / BUILT_IN[dataset].marker(), "stamp", stamp, f"{dataset} dataset copy")
    return BUILT_IN[dataset].write(root, seed, stamp)


@dataclass(frozen=True)
class PlannedCategory:
    """What ``prepare_category`` will write for one category, found by reading only."""

    clean: CategoryFiles
    splits: Splits
    split_path: Path
    write_splits: bool  # no splits file yet, or the images on disk changed (same rule): (re)write it


def plan_category(root: Path, category: str, out: Path, seed: int, protocol: str = "study",
                  layout: str = "mvtec") -> PlannedCategory:
    """Discover ``category`` with its layout's reader (warning about its data hygiene) and decide its splits,
    writing nothing; DatasetError where the data is broken or ``out`` holds splits another seed or rule made."""
    clean = layouts.LAYOUTS[layout].discover(root, category)
    check_hygiene(clean)
    check_counts(clean)
    split_path = out / "splits" / f"{category}.json"
    fresh = make_splits(clean, seed, protocol)
    if not split_path.exists():
        return PlannedCategory(clean, fresh, split_path, True)
    try:
        stored = read_splits(split_path)
    except FileFormatError as exc:
        raise DatasetError(str(exc)) from None
    if stored == fresh:
        return PlannedCategory(clean, fresh, split_path, False)
    if stored.seed == fresh.seed and stored.protocol == fresh.protocol:
        # same rule, other files: the data changed (an image added or removed), so the splits follow it
        log.warning("splits: %s: the images on disk changed, %s: splits redone", clean.path,
                    _listing_change(stored, fresh))
        return PlannedCategory(clean, fresh, split_path, True)
    raise DatasetError(
        f"{split_path} holds splits that differ from the ones seed {seed} gives on "
        f"{clean.path} (another seed or other data). Use a new --out, or delete the "
        "file to replace it."
    )


def write_category(root: Path, plan: PlannedCategory, out: Path, seed: int, progress: bool = True,
                   domains: tuple[str, ...] = ("shift",)) -> PreparedCategory:
    """Write a planned category's copy in each derived domain of ``domains`` (those the run's scenarios use),
    under ``<out>/data/<root name>-<domain>`` (its splits: ``prepare_categories``)."""
    category, files = plan.clean.name, {CLEAN: plan.clean}
    for name in domains:
        copy_root = out / "data" / f"{root.name}-{name}"
        stamp = fingerprint(name)
        note_if_stale(copy_root / category / PARAMS_LOG, "stamp", stamp, f"{DOMAINS[name].copy} of {category}")
        with phase(f"{name} generation"):
            DOMAINS[name].write(plan.clean, copy_root, seed, progress, stamp)
        # the copy is in MVTec AD's layout whatever the source's (relative names are in its form); without
        # masks by design or by lack, the clean discovery already said so: the copy says nothing again
        files[name] = discover_category(copy_root, category, not plan.clean.has_masks)
    return PreparedCategory(files, plan.splits)


def prepare_categories(root: Path, categories: list[str], out: Path, seed: int, progress: bool = True,
                       protocol: str = "study", domains: tuple[str, ...] = ("shift",), layout: str = "mvtec",
                       threshold: str = "auto") -> dict[str, PreparedCategory]:
    """Every category planned first (reading only: a broken category, or ``--threshold f1`` where a
    validation split holds no anomaly, refuses before anything is written), then written
    (``plan_category``, ``write_category``)."""
    for category in categories:
        plain_name(category, "category", "--categories")
    plans = [plan_category(root, c, out, seed, protocol, layout) for c in categories]
    if threshold == "f1":
        lacking = [p.clean.name for p in plans if not p.splits.val_anomalous]
        if lacking:
            raise DatasetError(f"--threshold f1 cannot be used: the validation split of {', '.join(lacking)} holds no "
                               "anomalous image; use --threshold auto or normal-fpr")
    for plan in plans:  # every category's splits first (each due file), then the derived copies
        if plan.write_splits:
            save_splits(plan.splits, plan.split_path)
    return {p.clean.name: write_category(root, p, out, seed, progress, domains) for p in plans}


def prepare_category(root: Path, category: str, out: Path, seed: int, progress: bool = True,
                     protocol: str = "study", domains: tuple[str, ...] = ("shift",), layout: str = "mvtec"
                     ) -> PreparedCategory:
    """One category: ``prepare_categories`` of one."""
    return prepare_categories(root, [category], out, seed, progress, protocol, domains, layout)[category]


def _listing_change(old: Splits, new: Splits) -> str:
    def names(sp: Splits) -> set[str]:
        return set(sp.train) | set(sp.val()) | set(sp.test())

    added, removed = sorted(names(new) - names(old)), sorted(names(old) - names(new))
    listed = ", ".join(f"{len(n)} {w} ({', '.join(n[:3])}{' ...' if len(n) > 3 else ''})"
                       for w, n in (("added", added), ("removed", removed)) if n)
    if listed:
        return listed
    if (old.source, old.holdout) != (new.source, new.holdout):
        return "the rule recorded with the splits changed (their source or hold-out rule)"
    return "their labels changed"


def check_counts(files: CategoryFiles) -> str | None:
    """One line when a category of a benchmark holds other counts than its official copy (an incomplete or
    altered copy), naming what differs; None when it matches or no count is recorded for it."""
    counts, source = published_counts(files.layout)
    want = counts.get(files.name)
    if not want:
        return None
    if files.capabilities.official_split and files.split_source is None:
        return None  # the published counts are those of its split file's train / test sets
    have = {"train_good": len(files.train_good), "test_good": len(files.test_good),
            "test_defect": len(files.test_anomalous), **{k: len(v) for k, v in files.unlabelled.items()}}
    differ = [f"{k} {have.get(k, 0)} (published {n})" for k, n in want.items() if have.get(k, 0) != n]
    if not differ:
        return None
    line = (f"{files.path}: {', '.join(differ)}: not the official copy's counts ({source.split(' (')[0]}); an "
            "incomplete or altered copy: its numbers are not the benchmark's")
    log.warning("%s", line)
    return line


def check_hygiene(files: CategoryFiles) -> list[str]:
    """Warn, naming the files, when a test image equals a training image by content (leakage) or one
    image is both normal and defective (two labels); return the warnings."""
    by_content: dict[str, list[Sample]] = {}
    for s in files.train_good + files.test_good + files.test_anomalous:
        by_content.setdefault(file_digest(s.path), []).append(s)
    leaks, twice = [], []
    for same in by_content.values():
        train = [s.relpath for s in same if s.relpath.startswith("train/")]
        test = [s for s in same if not s.relpath.startswith("train/")]
        if train and test:
            leaks += [f"{t.relpath} = {train[0]}" for t in test]
        if len({s.label for s in same}) > 1:
            twice.append(" = ".join(s.relpath for s in same))

    def some(items: list[str]) -> str:
        return "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")

    said = []
    if leaks:
        said.append(f"{files.path}: {len(leaks)} test image(s) have the content of a training image ({some(leaks)}): "
                    "the model was fit on what it is tested on; remove or replace them")
    if twice:
        said.append(f"{files.path}: {len(twice)} image(s) carry two labels, normal and defective, by content "
                    f"({some(twice)}): keep each image in one folder")
    for line in said:
        log.warning("%s", line)
    return said
