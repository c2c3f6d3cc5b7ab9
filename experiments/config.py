"""The run configuration: every setting of a run, its defaults, and its validation.

This module sits on the ground floor of ``experiments``: it imports nothing from the rest of
the package at load time, so the runner, the methods registry, the executors and the CLI can
all import it without a cycle.  ``validate`` checks every field when a run is set up, before
any data is read, and raises ``ConfigError`` with one line naming the option (the CLI prints it
and exits 2).  ``DatasetError`` stays for problems of the data itself.

The methods' hyperparameters are the flat fields below (``coreset_ratio`` ... ``padim_features``);
each method's registry entry (``experiments.methods``) says which of them become which
constructor arguments, and ``tests/test_config.py`` holds their defaults equal to the model
constructors' own (the study's numbers, ``docs/protocol.md``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ad_core import SEED

BUILT_IN = ("embedded", "elpv")
OFFLINE_BACKBONE = "efficientnet_lite0"  # built-in datasets without --backbone: the weights that install offline
SPLITS = ("study", "full_test")
EXECUTORS = ("local", "dask")
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds
# What a recorded configuration (``run --config``, a golden's config.json) may not set: where the run
# executes and what it reads and writes come from the command line or the environment, never from a
# handed-over file (docs/security.md).  A recorded value of these is not followed, and said.
MACHINE_SETTINGS = ("out", "data", "device", "executor", "scheduler", "workers", "threads", "feature_cache",
                    "feature_memory_gb", "progress")
WEIGHT_NAMES = ("torchvision", "package", "random")  # --weights values that are names; anything else is a file


class ConfigError(ValueError):
    """A run setting is invalid; the message names the option, the value and what to do."""


def _default_methods() -> list[str]:
    from experiments.methods import METHODS

    return list(METHODS)


@dataclass
class RunConfig:
    """Everything a run depends on; the number-affecting part is guarded per ``--out``."""

    out: Path = Path("outputs")
    data: str | None = None
    dataset: str = "embedded"  # built-in dataset used when data is None: embedded | elpv
    layout: str = "auto"  # ad_core.data.layouts: how --data is read ("auto": detected from the folder)
    categories: list[str] | None = None
    scenarios: list[str] | None = None
    methods: list[str] = field(default_factory=_default_methods)
    preset: str = "study"  # the protocol (experiments.presets); its settings fill the fields below
    backbone: str | None = None  # None: the preset's (study: resnet50), efficientnet_lite0 on built-in data
    weights: str | None = None
    device: str = "auto"
    knn_backend: str = "auto"  # ad_core.models.kernels.knn.BACKENDS; "auto": one rule from the device (resolve_backend)
    seed: int = SEED
    batch_size: int = 16
    coreset_ratio: float = 0.05
    k: int = 9
    projection_dim: int = 128
    padim_features: int | None = 100  # None: the preset's number for the backbone (papers: 550 on WideResNet-50)
    patchcore_reweighting: str = "study"  # "paper": the original max-patch reweighting
    patchcore_blur: float | None = None  # sigma of the map blur (the papers: 4)
    patchcore_embedding: str = "study"  # "original": the PatchCore authors' 1024-d aggregation
    image_size: int = 224  # preprocessing, masks, maps and metrics all work at this size
    resize: int | None = None  # None: resize straight to image_size; int: shorter side, then centre crop
    split: str = "study"  # "full_test": the papers' protocol (train/good to train, the whole test set)
    threshold: str = "auto"  # ad_core.thresholds.CHOICES: f1 where validation has anomalies, else normal-fpr
    threshold_fpr: float = 0.01  # the normal-fpr rule's target rate of validation normals at or above tau
    progress: bool = True
    bootstrap: bool = True  # 95% intervals per class (1,000 stratified resamples)
    feature_cache: Path | None = None  # default <out>/cache/features; seeds of one study share one
    # how the independent units run (not number-affecting): "local" in this process, or "dask"
    # (experiments.executors: features, fits and scores as tasks of a Dask cluster, then the same runner)
    executor: str = "local"
    scheduler: str | None = None  # a Dask scheduler address; None starts a LocalCluster
    workers: int = 2  # LocalCluster size
    threads: int | None = None  # torch/numba/faiss threads per process; None: all cores (a LocalCluster's shared out)
    feature_memory_gb: float = 4.0  # feature maps kept in memory between the scenarios' passes (not number-affecting)

    @property
    def built_in(self) -> bool:
        return self.data is None

    def resolved_backbone(self) -> str:
        """The backbone this run uses: --backbone, else the offline one on built-in data, else the preset's."""
        if self.backbone:
            return self.backbone
        if self.built_in:
            return OFFLINE_BACKBONE
        from experiments.presets import get_preset

        return get_preset(self.preset).backbone

    def preprocessor(self) -> Any:
        from ad_core.data.preprocess import Preprocessor

        return Preprocessor(size=self.image_size, resize=self.resize)

    def to_json(self) -> dict[str, object]:
        """Every field, JSON-ready (paths as strings): ``from_json`` rebuilds the same configuration."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, object], source: str = "the configuration") -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(d)
        for name in ("out", "feature_cache"):
            if values.get(name) is not None:
                values[name] = Path(str(values[name]))
        return cls(**values)


# -- validation ---------------------------------------------------------------------------
def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _fail(name: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"{_option(name)} {value!r}: {why}")


def _whole(config: RunConfig, name: str, low: int, high: int | None = None, optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"a whole number >= {low}" + (f" and <= {high}" if high is not None else "")
        raise _fail(name, value, f"must be {bound}")


def _real(config: RunConfig, name: str, low: float, high: float | None = None, low_open: bool = False,
          optional: bool = False) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise _fail(name, value, f"must be a finite number in {interval}")


def _choice(config: RunConfig, name: str, allowed: tuple[str, ...] | list[str]) -> None:
    value = getattr(config, name)
    if value not in allowed:
        raise _fail(name, value, f"choose one of {', '.join(allowed)}")


def _names(config: RunConfig, name: str, allowed: list[str] | tuple[str, ...] | None = None) -> None:
    values = getattr(config, name)
    if values is None:
        return
    if isinstance(values, str) or not values:
        raise _fail(name, values, "give one or more names")
    if len(set(values)) != len(values):
        raise _fail(name, values, "a name is repeated")
    for v in values:
        if allowed is not None and v not in allowed:
            raise _fail(name, v, f"choose from {', '.join(allowed)}")
        if allowed is None:
            from experiments.readers import FileFormatError, plain_name

            try:
                plain_name(v, "category", _option(name))
            except FileFormatError:
                raise _fail(name, v, "a category is one folder name under --data (no path separators, no '.' or "
                                     "'..', at most 255 bytes of UTF-8)") from None


def check_device(device: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` that this machine has (ConfigError otherwise)."""
    import torch

    if device in ("auto", "cpu"):
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise _fail("device", device, "choose auto, cpu, cuda or cuda:N") from None
    if parsed.type != "cuda" or str(parsed) != device:
        raise _fail("device", device, "choose auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise _fail("device", device, f"torch {torch.__version__} sees no CUDA device here; use --device cpu or auto")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise _fail("device", device, f"this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_out(out: Path, option: str = "out") -> None:
    """``out`` is a folder this process can write in, or can be made one; nothing is created (a refusal
    of the data later leaves no empty ``--out`` behind).  A folder that holds a symbolic link anywhere
    below it is refused naming the link (``io.find_link``), and writes below it follow none from now on
    (``io.confine_writes``)."""
    from ad_core.data.io import confine_writes, find_link

    path = Path(out)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if path.exists() and not path.is_dir():
        raise _fail(option, str(path), "is a file, not a folder; choose a folder")
    if existing is not None and not existing.is_dir():
        raise _fail(option, str(path), f"{existing} is a file, not a folder")
    try:  # a temporary folder made and removed where --out is (or would be made): nothing stays behind
        os.rmdir(tempfile.mkdtemp(dir=existing or Path.cwd(), prefix=".ad-repro-write-test-"))
    except OSError as exc:
        raise _fail(option, str(path), f"cannot write there ({exc.strerror or exc}); choose a writable folder") \
            from None
    link = find_link(path) if path.is_dir() else None
    if link is not None:
        raise _fail(option, str(path), f"{link} is a symbolic link inside it, and nothing is written through a "
                    "link: replace the link by a real folder or file, or choose another folder")
    confine_writes(path)


def check_environment() -> None:
    """The settings this process takes from the environment (``AD_REPRO_MAX_IMAGE_PIXELS``), checked like
    options: one line naming the variable (``ConfigError``), before any data is read."""
    from ad_core.data.io import max_image_pixels
    from ad_core.errors import SettingError

    try:
        max_image_pixels()
    except SettingError as exc:
        raise ConfigError(str(exc)) from None


def check_weights(backbone: str, weights: str | None, seed: int) -> None:
    """The backbone loads with these weights (a file: readable and of this backbone), before any data is read."""
    from ad_core.errors import WeightsError
    from ad_core.features.backbones import build_backbone

    if weights not in (None, "torchvision", "package", "random") and not Path(weights).is_file():
        raise _fail("weights", weights, "is neither 'torchvision', 'package', 'random' nor a readable file")
    try:
        build_backbone(backbone, weights, seed)
    except WeightsError as exc:
        hint = "" if backbone == OFFLINE_BACKBONE else \
            f" Or run with --backbone {OFFLINE_BACKBONE} --weights package (installs offline)."
        raise ConfigError(f"--weights for --backbone {backbone}: {' '.join(str(exc).split())}{hint}") from None


def validate(config: RunConfig, touch_out: bool = True, load_weights: bool = True) -> RunConfig:
    """Check every field; return the configuration unchanged or raise ``ConfigError`` (one line).

    ``touch_out``: also make ``--out`` and write a test file there; ``load_weights``: also build the
    backbone with its weights (about a second) so that missing weights fail before any data is read.
    """
    from ad_core.features import BACKBONE_NAMES
    from experiments.methods import METHODS
    from experiments.presets import PRESETS
    from experiments.scenarios import SCENARIOS

    _choice(config, "preset", list(PRESETS))
    _choice(config, "dataset", BUILT_IN)
    from ad_core.data.layouts import NAMES as LAYOUT_NAMES

    _choice(config, "layout", LAYOUT_NAMES)
    if config.data is not None and not Path(config.data).expanduser().is_dir():
        raise _fail("data", config.data, "is not a folder (an MVTec-layout dataset root)")
    _names(config, "categories")
    _names(config, "scenarios", list(SCENARIOS))
    _names(config, "methods", list(METHODS))
    if config.backbone is not None:
        _choice(config, "backbone", BACKBONE_NAMES)
    _whole(config, "seed", 0, SEED_MAX)
    _whole(config, "batch_size", 1)
    _real(config, "coreset_ratio", 0.0, 1.0, low_open=True)
    _whole(config, "k", 1)
    _whole(config, "projection_dim", 1)
    _whole(config, "padim_features", 1, optional=True)
    from ad_core.models.patchcore import EMBEDDINGS, REWEIGHTING

    _choice(config, "patchcore_reweighting", REWEIGHTING)
    _choice(config, "patchcore_embedding", EMBEDDINGS)
    if config.k == 1 and config.patchcore_reweighting == "study" and "patchcore" in config.methods:
        raise _fail("k", 1, "with the study's reweighting every score is 0; use k >= 2 (the study: 9)")
    _real(config, "patchcore_blur", 0.0, optional=True)
    _whole(config, "image_size", 32)
    _whole(config, "resize", config.image_size, optional=True)
    _choice(config, "split", SPLITS)
    from ad_core.thresholds import CHOICES

    _choice(config, "threshold", CHOICES)
    _real(config, "threshold_fpr", 0.0, 0.5)
    _choice(config, "executor", EXECUTORS)
    if config.executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise _fail("executor", "dask", "needs Dask: pip install 'ad-repro[dask]'")
    _whole(config, "workers", 1)
    _whole(config, "threads", 1, optional=True)
    _real(config, "feature_memory_gb", 0.0)
    check_device(config.device)
    from ad_core.models.kernels.knn import BACKENDS, KnnBackendError, resolve_backend

    _choice(config, "knn_backend", BACKENDS)
    try:
        resolve_backend(config.device, config.knn_backend)
    except KnnBackendError as exc:
        raise _fail("knn_backend", config.knn_backend, str(exc)) from None
    check_environment()
    if touch_out:
        check_out(config.out)
        if config.feature_cache is not None:
            check_out(config.feature_cache, "feature_cache")
    if load_weights:
        check_weights(config.resolved_backbone(), config.weights, config.seed)
    return config


def check_seeds(seeds: list[int]) -> list[int]:
    """``--seeds``: distinct seeds in numpy's range."""
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX]
    if bad:
        raise ConfigError(f"--seeds {bad[0]!r}: every seed must be a whole number in [0, {SEED_MAX}]")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"--seeds {' '.join(map(str, seeds))}: seed {repeated[0]} is repeated; "
                          "each seed is one run of the study")
    return seeds
