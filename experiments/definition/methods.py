"""The method registry: one entry per anomaly-detection method the runner can fit and score.

An entry names the model class (imported on first use), its hyperparameters (a settings class
whose fields are the constructor's arguments, each declared once with ``setting``: the CLI's
``--<method>-<argument>`` options, their checks and the configuration file's keys follow from it),
the run settings it also takes, the saved model's file suffix and a description.
The runner, CLI, scenarios, report and golden tests read this table; adding a method is one
model file in ``ad_core/models/`` plus one ``register`` call, here or in its own module
(docs/protocol.md §5, §6, §10).

A registered class follows the scikit-learn habit (docs/protocol.md): ``Model(**params,
device=...)`` (and ``knn_backend=...`` where the entry declares ``uses_knn``),
``fit(feature_batches) -> self``, ``score(feature_batches) -> (image scores (N,), maps (N, S, S)
or None)``, ``save(path)``, ``Model.load(path, device=...)``,
``get_params() -> dict`` and ``fit_summary() -> dict`` (sizes of the learned state).

Capabilities an entry declares (the runner asks the entry, never the object):
- ``uses_knn``: the model searches nearest neighbours and takes ``knn_backend`` (``ad_core.models.kernels.knn``);
- ``nested_coreset``: the model has a ``coreset_ratio``, and a fit at one ratio gives every smaller
  one (``with_ratio``, ``fit_seconds_at``) and scores them in one search (``score_nested``), so a
  coreset sweep is one fit and one search (PatchCore).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from experiments.definition.settings import Declared, declared, setting


class Settings(Protocol):
    """What an entry reads of a run's settings (``experiments.definition.config.RunConfig``, which imports this
    module: the registry depends on no configuration type)."""

    knn_backend: str
    hyperparameters: dict[str, dict[str, Any]]


class AnomalyModel(Protocol):
    def fit(self, features: Any) -> AnomalyModel: ...
    def score(self, features: Any) -> tuple[np.ndarray, np.ndarray | None]: ...
    def save(self, path: Any) -> None: ...
    def get_params(self) -> dict[str, object]: ...
    def fit_summary(self) -> dict[str, int]: ...


# -- each method's hyperparameters: constructor arguments of the same names ------------------
# (defaults: the study's numbers, equal to the constructors' own: tests/test_config.py)
def _patchcore_choices(name: str) -> Any:
    def choices() -> tuple[str, ...]:
        from ad_core.models import patchcore

        return getattr(patchcore, name)
    return choices


@dataclass(frozen=True)
class PatchCoreSettings:
    coreset_ratio: float = setting(0.05, "PatchCore's coreset ratio (the fraction of training patches kept)",
                                   low=0.0, high=1.0, low_open=True, aliases=("--coreset-ratio",), metavar="RATIO")
    k: int = setting(9, "neighbours of the per-patch reweighting", low=1)
    projection_dim: int = setting(128, "random projection of the patch features before the coreset search",
                                  low=1, metavar="DIM")
    reweighting: str = setting("study", "'study': per-patch reweighting; 'paper': the original max-patch one",
                               choices=_patchcore_choices("REWEIGHTING"),
                               heavy_choices=True)
    blur_sigma: float | None = setting(None, "sigma of the anomaly map's Gaussian blur in pixels (the papers: 4; "
                                       "default: none)", low=0.0, metavar="SIGMA")
    embedding: str = setting("study", "'study': the layer2+3 patch features; 'original': the PatchCore authors' "
                             "1024-d aggregation", choices=_patchcore_choices("EMBEDDINGS"), heavy_choices=True)


@dataclass(frozen=True)
class PaDiMSettings:
    n_features: int | None = setting(100, "PaDiM's random feature dimensions (a config's null: the preset's "
                                     "number for the backbone, e.g. 550 on WideResNet-50)", low=1,
                                     metavar="DIMS")


@dataclass(frozen=True)
class DN2Settings:
    k: int = setting(2, "DN2's neighbours of an image's mean-pooled feature (Bergman et al.: 2)", low=1)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    model: str  # "module:Class"
    suffix: str  # saved model file: models/<name>_<scope>_<domain><suffix>
    description: str
    settings: type = DN2Settings  # a frozen dataclass of setting(...) fields: the constructor's hyperparameters
    run_settings: tuple[str, ...] = ()  # run settings handed to the constructor under their own names
    uses_knn: bool = False
    nested_coreset: bool = False

    def model_class(self) -> type:
        module, cls = self.model.split(":")
        return getattr(importlib.import_module(module), cls)

    def declared(self) -> list[Declared]:
        """The hyperparameters' declarations, named ``<method>.<argument>`` (``--<method>-<argument>``)."""
        return declared(self.settings, prefix=f"{self.name}.")

    def defaults(self) -> dict[str, Any]:
        return asdict(self.settings())

    def _runtime(self, device: str, knn_backend: str) -> dict[str, str]:
        return {"device": device, **({"knn_backend": knn_backend} if self.uses_knn else {})}

    def build(self, config: Settings, device: str, **overrides: object) -> AnomalyModel:
        """A new unfitted model with the run's settings (``overrides``: e.g. a swept coreset ratio)."""
        params = {**config.hyperparameters[self.name], **{n: getattr(config, n) for n in self.run_settings}}
        return self.model_class()(**{**params, **overrides}, **self._runtime(device, config.knn_backend))

    def load(self, path: Any, device: str, knn_backend: str = "auto") -> AnomalyModel:
        return self.model_class().load(path, **self._runtime(device, knn_backend))

    def describe(self, config: Settings) -> dict[str, object]:
        """The model's hyperparameters under this configuration (recorded with every result)."""
        return self.build(config, "cpu").get_params()


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (its options, validation and config keys follow from ``spec.settings``)."""
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is registered already")
    METHODS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a registered method (a test's toy)."""
    METHODS.pop(name, None)


register(MethodSpec("patchcore", "ad_core.models.patchcore:PatchCore", ".npy",
                    "PatchCore (Roth et al. 2022): coreset memory bank of patch features, kNN distance",
                    PatchCoreSettings, ("image_size", "seed", "progress"), uses_knn=True, nested_coreset=True))
register(MethodSpec("padim", "ad_core.models.padim:PaDiM", ".pt",
                    "PaDiM (Defard et al. 2020): per-position Gaussian of patch features, Mahalanobis distance",
                    PaDiMSettings, ("image_size", "seed")))
register(MethodSpec("dn2", "ad_core.models.dn2:DN2", ".npz", "DN2 (Bergman et al. 2020): image-level 2-NN baseline",
                    DN2Settings, uses_knn=True))


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; registered methods: {', '.join(METHODS)}.")
    return METHODS[name]
