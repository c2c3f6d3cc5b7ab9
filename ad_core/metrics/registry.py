"""The metric registry (docs/protocol.md §7): one ``Metric`` record per number the study checks, ``METRICS``.

A record holds everything every reader needs: its name and level, how it is computed (``compute``, from
an ``EvaluationSet``), its bootstrap statistic, what it needs to apply (masks, both labels ...), its
direction, a short description and its golden tolerance rule (a function of the scenario's set sizes,
with its rule text and why).  Results, evaluation, goldens, the results file schema and the report loop
over ``METRICS`` in its order (the order every table shows).  Adding a metric: one module that declares a
``Metric`` and calls ``register`` (``ad_core.metrics.catalog`` holds the built-in ones), and its test.

Levels: ``image`` (image scores and labels of a test set), ``pixel`` and ``region`` (anomaly maps and
masks), evaluated per class by ``evaluate``; ``calibration`` (tau), ``model`` (a fitted model's size),
``cross-class`` (the unified model's analysis) and ``uncertain`` (images of unsure label, one number per
group) are computed elsewhere (``source``) and only checked against goldens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ad_core.errors import UndefinedMetricError
from ad_core.thresholds import check_labels, check_scores

Level = Literal["image", "pixel", "region", "calibration", "model", "cross-class", "uncertain"]
Direction = Literal["higher", "lower", "none"]  # which way is better ("none": a size or a rate, no better way)
Origin = Literal["study", "field"]
EVALUATED: tuple[Level, ...] = ("image", "pixel", "region")  # computed per class by ``evaluate_metrics``
FROM_MAPS: tuple[Level, ...] = ("pixel", "region")  # computed from anomaly maps and masks

NO_MASKS = "the dataset has no ground-truth masks (image-level only)"
NO_MAPS = "the method scores whole images and makes no anomaly maps (image-level only)"


@dataclass(frozen=True)
class BenchmarkData:
    """What a benchmark's own measures read beyond maps and masks (``Need``s say which each one needs).

    ``measures``: the benchmark's official measures (its layout's ``Capabilities.measures``), the only
    benchmark-specific metrics computed on it.  ``regions``: per image its ground-truth regions at the
    maps' resolution, (mask (H, W) bool, saturation area in pixels) each, [] for a normal image (MVTec LOCO's
    sPRO); ``region_thresholds``: the thresholds its official sPRO picks on the whole test set, shared by
    the per-defect-type subsets.  ``segmentation_threshold``: SegF1's, from the validation normals' maps.
    """

    measures: tuple[str, ...] = ()
    regions: Sequence[Sequence[tuple[np.ndarray, float]]] | None = None
    region_thresholds: np.ndarray | None = None
    segmentation_threshold: float | None = None

    def subset(self, keep: np.ndarray) -> BenchmarkData:
        """The same for the images ``keep`` (N,) bool selects (a defect type's subset)."""
        regions = None if self.regions is None else [r for r, k in zip(self.regions, keep) if k]
        return replace(self, regions=regions)


@dataclass
class EvaluationSet:
    """One evaluation set at its calibrated tau, checked once.

    scores (N,) float64, labels (N,) bool, threshold: tau (``score >= tau`` is anomalous); maps (N, H, W)
    float and masks (N, H, W) bool, or None where the data has no masks or the method no maps;
    ``benchmark``: what its benchmark's own measures read.
    """

    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    maps: np.ndarray | None = None
    masks: np.ndarray | None = None
    benchmark: BenchmarkData = field(default_factory=BenchmarkData)
    shared: dict[Callable[[EvaluationSet], Any], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, threshold: float, maps: np.ndarray | None = None,
           masks: np.ndarray | None = None, benchmark: BenchmarkData | None = None) -> EvaluationSet:
        """Scores checked finite (ValueError otherwise), labels 0/1 of the same length."""
        s = check_scores(scores)
        return cls(s, check_labels(labels, s.size), float(threshold), maps, masks, benchmark or BenchmarkData())

    def once(self, computation: Callable[[EvaluationSet], Any]) -> Any:
        """``computation(self)``, computed once per set: metrics sharing one pass (one sort) ask it alike."""
        if computation not in self.shared:
            self.shared[computation] = computation(self)
        return self.shared[computation]


@dataclass(frozen=True)
class Need:
    """What a metric needs of an evaluation set; ``unmet`` says why it is missing (None: present).

    ``quiet``: an unmet need that is no fault of the set (a benchmark's own measure on another benchmark):
    the metric is None without being the reason its level's metrics are absent."""

    name: str
    unmet: Callable[[EvaluationSet], str | None]
    quiet: bool = False


def measure_of_the_benchmark(name: str) -> Need:
    """The need of a benchmark's own measure: computed only where the benchmark declares it."""
    return Need("the benchmark's measure", lambda e: None if name in e.benchmark.measures else
                f"{name} is not one of this benchmark's official measures", quiet=True)


def one_label_reason(labels: np.ndarray, metric: str = "Image AUROC") -> str | None:
    """Why ``metric`` is undefined on a set of one label only (None: both labels occur)."""
    y = np.asarray(labels).astype(bool)
    if y.all() or not y.any():
        return (f"{metric} needs both normal and anomalous images; this set has only "
                f"{'anomalous' if y.all() else 'normal'} ones.")
    return None


BOTH_LABELS = Need("both labels", lambda e: one_label_reason(e.labels))
MASKS = Need("masks", lambda e: NO_MASKS if e.masks is None else None)
MAPS = Need("maps", lambda e: NO_MAPS if e.maps is None else None)


@dataclass(frozen=True)
class SetSizes:
    """The smallest test sets of a scenario (over its classes): they give the coarsest granularity.

    ``groups``: the smallest size of each group of images of unsure label; ``group``: the group a
    per-group rule is asked about (None otherwise).
    """

    n_normal: int
    n_anomalous: int
    n_test: int
    groups: Mapping[str, int] = field(default_factory=dict)
    group: str | None = None

    @property
    def n_group(self) -> int:
        """The size of ``group``'s smallest set."""
        if self.group is None:
            raise ValueError("no group asked for")
        return self.groups[self.group]


@dataclass(frozen=True)
class Tolerance:
    """A golden tolerance rule: ``allowance(sizes)`` = (granular allowance, the rule as text), and why.

    ``unit``: ``abs`` (|actual - expected| <= allowance) or ``rel`` (x |expected|).  ``drift``: the
    allowance is max(granular, the golden's factor x the measured drift); False: exact, no drift term.
    ``why`` may name ``{group}`` (a per-group rule).
    """

    allowance: Callable[[SetSizes], tuple[float, str]]
    why: str
    unit: Literal["abs", "rel"] = "abs"
    drift: bool = True


def floor(value: float, shown: str, why: str) -> Tolerance:
    """A fixed allowance, ``shown`` as written in the rule (granularity negligible: the measured drift decides)."""
    return Tolerance(lambda s: (value, f"floor {shown}"), why)


def per_pair(swaps: float, why: str) -> Tolerance:
    """``swaps`` swapped (normal, anomalous) pairs of the smallest test set: swaps / (n_normal x n_anomalous)."""
    return Tolerance(lambda s: (swaps / (s.n_normal * s.n_anomalous), f"{swaps:g} / ({s.n_normal} x {s.n_anomalous})"),
                     why)


def per_image(images: float, why: str) -> Tolerance:
    """``images`` images of the smallest test set crossing a threshold: images / n_test."""
    return Tolerance(lambda s: (images / s.n_test, f"{images:g} / {s.n_test}"), why)


@dataclass(frozen=True)
class Metric:
    """One checked number: what it is, how it is computed, bootstrapped and held to a golden.

    ``compute(set) -> float``: its value on an ``EvaluationSet`` (levels ``image``, ``pixel``, ``region``);
    None where it is computed elsewhere (``source`` names where).  ``bootstrap``: for ``image``, tau ->
    statistic(normal scores (..., n0), anomalous scores (..., n1)) -> (...); for ``pixel`` / ``region``,
    (``bootstrap.PixelHistograms``, image weights (R, N)) -> (R,); None: no interval.  ``needs``: checked
    in order before computing; the first unmet one is why it is absent.  ``origin``: ``study`` for the
    study's first numbers (written before ``confusion`` in a results file), ``field`` for the later ones.
    ``per_defect``: shown in the report's per-defect table.  ``cells``: the prefix of the numbers it judges
    (``cross_class_<i>_<j>``); a ``uncertain`` metric's name holds ``{group}``.
    """

    name: str
    level: Level
    description: str
    tolerance: Tolerance
    direction: Direction = "higher"
    compute: Callable[[EvaluationSet], float] | None = None
    source: str = ""
    bootstrap: Callable[..., Any] | None = None
    needs: tuple[Need, ...] = ()
    origin: Origin = "field"
    per_defect: bool = False
    cells: str | None = None

    def absent_because(self, evaluation: EvaluationSet) -> str | None:
        """The first unmet need's reason, or None when the metric applies to this set."""
        return next((why for why in (n.unmet(evaluation) for n in self.needs) if why), None)

    @property
    def benchmark_specific(self) -> bool:
        """A benchmark's own measure: computed only on the benchmarks that declare it."""
        return any(n.quiet for n in self.needs)

    def applies(self, evaluation: EvaluationSet) -> bool:
        """Whether this set is one the metric is meant for (its quiet needs met: the benchmark's measure)."""
        return not any(n.quiet and n.unmet(evaluation) for n in self.needs)

    def for_group(self, group: str) -> str:
        """The name of this per-group number for one group: ``uncertain_p033_auroc``."""
        return self.name.format(group=group)


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` at the end of ``METRICS`` (every table, results file and golden takes it up);
    ValueError where its name is taken or it is not evaluated yet declares no source."""
    if metric.name in METRICS:
        raise ValueError(f"a metric named {metric.name!r} is registered already")
    if (metric.compute is None) == (metric.level in EVALUATED):
        raise ValueError(f"metric {metric.name!r}: levels {', '.join(EVALUATED)} need a compute function, "
                         "the others none (they name their source)")
    METRICS[metric.name] = metric
    return metric


def unregister(name: str) -> Metric:
    """Remove a metric (a test's toy metric, once the test is done)."""
    return METRICS.pop(name)


def metric(name: str) -> Metric:
    """The record of ``name`` (KeyError naming the registered ones otherwise)."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"no metric {name!r}; registered: {', '.join(METRICS)}") from None


def of_levels(*levels: Level) -> list[Metric]:
    """The records of those levels, in registry order."""
    return [m for m in METRICS.values() if m.level in levels]


def evaluated() -> list[Metric]:
    """The metrics ``evaluate_metrics`` computes per class, in table order."""
    return of_levels(*EVALUATED)


def metric_names() -> tuple[str, ...]:
    """The evaluated metrics' names, in the order every table shows them."""
    return tuple(m.name for m in evaluated())


def recorded_names() -> tuple[str, ...]:
    """The numbers stored per (method, class): the evaluated metrics and tau, in registry order."""
    return tuple(m.name for m in of_levels(*EVALUATED, "calibration"))


def evaluate_metrics(evaluation: EvaluationSet, metrics: list[Metric]) -> tuple[dict[str, float | None], str | None]:
    """({name: value or None} of each of ``metrics``, why the first absent one is absent (None: none is)).

    A metric is None where a need is unmet or its computation raises ``UndefinedMetricError`` (its
    message is the reason).
    """
    values: dict[str, float | None] = {}
    first_absent: str | None = None
    for m in metrics:
        if not m.applies(evaluation):  # another benchmark's measure: None, and no reason to give
            values[m.name] = None
            continue
        why = m.absent_because(evaluation)
        if why is None:
            try:
                values[m.name] = m.compute(evaluation)  # type: ignore[misc]
                continue
            except UndefinedMetricError as exc:
                why = str(exc)
        values[m.name] = None
        first_absent = first_absent or why
    return values, first_absent
