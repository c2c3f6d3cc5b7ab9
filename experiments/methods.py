"""The method registry: one entry per anomaly-detection method the runner can fit and score.

An entry names the model class (imported on first use), which run-configuration fields
become which constructor arguments, the saved model's file suffix and a description.
The runner, CLI, scenarios, report and golden tests read this table; adding a method is
one model file in ``ad_core/models/`` plus one entry here (docs/protocol.md §5, §6, §10).

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Settings(Protocol):
    """What an entry reads of a run's settings (``experiments.config.RunConfig``, which imports this
    module: the registry depends on no configuration type)."""

    knn_backend: str


class AnomalyModel(Protocol):
    def fit(self, features: Any) -> AnomalyModel: ...
    def score(self, features: Any) -> tuple[np.ndarray, np.ndarray | None]: ...
    def save(self, path: Any) -> None: ...
    def get_params(self) -> dict[str, object]: ...
    def fit_summary(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class MethodSpec:
    name: str
    model: str  # "module:Class"
    suffix: str  # saved model file: models/<name>_<scope>_<domain><suffix>
    description: str
    config_params: Mapping[str, str] = field(default_factory=dict)  # constructor argument -> RunConfig field
    uses_knn: bool = False
    nested_coreset: bool = False

    def model_class(self) -> type:
        module, cls = self.model.split(":")
        return getattr(importlib.import_module(module), cls)

    def _runtime(self, device: str, knn_backend: str) -> dict[str, str]:
        return {"device": device, **({"knn_backend": knn_backend} if self.uses_knn else {})}

    def build(self, config: Settings, device: str, **overrides: object) -> AnomalyModel:
        """A new unfitted model with the run's settings (``overrides``: e.g. a swept coreset ratio)."""
        params = {arg: getattr(config, name) for arg, name in self.config_params.items()}
        return self.model_class()(**{**params, **overrides}, **self._runtime(device, config.knn_backend))

    def load(self, path: Any, device: str, knn_backend: str = "auto") -> AnomalyModel:
        return self.model_class().load(path, **self._runtime(device, knn_backend))

    def describe(self, config: Settings) -> dict[str, object]:
        """The model's hyperparameters under this configuration (recorded with every result)."""
        return self.build(config, "cpu").get_params()


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("patchcore", "ad_core.models.patchcore:PatchCore", ".npy",
               "PatchCore (Roth et al. 2022): coreset memory bank of patch features, kNN distance",
               {"coreset_ratio": "coreset_ratio", "projection_dim": "projection_dim", "k": "k",
                "reweighting": "patchcore_reweighting", "blur_sigma": "patchcore_blur",
                "embedding": "patchcore_embedding", "image_size": "image_size", "seed": "seed",
                "progress": "progress"},
               uses_knn=True, nested_coreset=True),
    MethodSpec("padim", "ad_core.models.padim:PaDiM", ".pt",
               "PaDiM (Defard et al. 2020): per-position Gaussian of patch features, Mahalanobis distance",
               {"n_features": "padim_features", "image_size": "image_size", "seed": "seed"}),
    MethodSpec("dn2", "ad_core.models.dn2:DN2", ".npz", "DN2 (Bergman et al. 2020): image-level 2-NN baseline",
               uses_knn=True),
)}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; registered methods: {', '.join(METHODS)}.")
    return METHODS[name]
