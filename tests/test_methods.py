"""The method registry: every registered method honours the model contract the runner relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.definition.config import RunConfig
from experiments.definition.methods import METHODS, get_method
from experiments.definition.scenarios import SCENARIOS
from experiments.execution.runner import StudyRun
from experiments.reporting.plots import FIGURES

pytestmark = pytest.mark.fast

SIZE = 32  # model resolution of these small cases


def feature_batches(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Small ResNet-shaped feature maps: layer1 (8 ch, 16x16), layer2 (16 ch, 8x8), layer3 (32 ch, 4x4)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"layer1": (8, 16), "layer2": (16, 8), "layer3": (32, 4)}
    return [{k: torch.rand(b, c, s, s, generator=g) for k, (c, s) in shapes.items()}
            for b in (n // 2, n - n // 2)]


def small_config() -> RunConfig:
    return RunConfig(image_size=SIZE, progress=False).with_settings({"padim.n_features": 10,
                                                                     "patchcore.coreset_ratio": 0.1})


def test_unknown_method_is_an_error_listing_the_registered_ones(tmp_path):
    with pytest.raises(ValueError, match="Unknown method 'nope'; registered methods: patchcore, padim"):
        get_method("nope")
    with pytest.raises(ValueError, match="registered methods"):
        StudyRun.of(RunConfig(out=tmp_path, methods=["patchcore", "nope"]))


def test_scenarios_name_registered_methods_and_known_figures():
    for sc in SCENARIOS.values():
        assert set(sc.methods or METHODS) <= set(METHODS), sc.name
        assert set(sc.figures) <= set(FIGURES), sc.name


@pytest.mark.parametrize("name", list(METHODS))
def test_registered_method_fits_scores_and_round_trips(name, tmp_path):
    spec = get_method(name)
    config = small_config()
    model = spec.build(config, "cpu")
    for arg, value in {**config.hyperparameters[name], **{n: getattr(config, n) for n in spec.run_settings}}.items():
        if arg in model.get_params():  # the run's settings reach the constructor
            assert model.get_params()[arg] == value, arg
    assert model.fit(feature_batches(6, 0)) is model
    assert set(model.fit_summary()) and all(isinstance(v, int) and v > 0 for v in model.fit_summary().values())
    test = feature_batches(5, 1)
    scores, maps = model.score(test)
    assert scores.shape == (5,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert maps is None or (maps.shape == (5, SIZE, SIZE) and np.isfinite(maps).all())
    path = tmp_path / f"model{spec.suffix}"
    model.save(path)
    again = spec.load(path, "cpu")
    assert again.get_params() == model.get_params()
    scores2, maps2 = again.score(test)
    np.testing.assert_array_equal(scores2, scores)
    assert (maps2 is None) == (maps is None)
    assert spec.describe(config) == model.get_params()


def test_defaults_are_the_protocol_numbers():
    """The study's settings, written out (docs/protocol.md §2, §5, §6): a changed default fails here."""
    from ad_core import SEED
    from ad_core.models import PaDiM, PatchCore

    c = RunConfig()
    assert (SEED, c.seed, c.image_size, c.get("patchcore.coreset_ratio"), c.get("patchcore.k"),
            c.get("patchcore.projection_dim"), c.get("padim.n_features")) == (
        42, 42, 224, 0.05, 9, 128, 100)
    assert PatchCore().get_params() == {"coreset_ratio": 0.05, "projection_dim": 128, "k": 9,
                                        "layers": ["layer2", "layer3"], "reweighting": "study", "blur_sigma": None,
                                        "embedding": "study",
                                        "image_size": 224, "seed": 42}
    assert PaDiM().get_params() == {"n_features": 100, "eps": 0.01, "layers": ["layer1", "layer2", "layer3"],
                                    "blur_sigma": 4.0, "stabilizer": 1e-5, "image_size": 224, "seed": 42}
    assert get_method("patchcore").describe(c) == PatchCore().get_params()
    assert get_method("padim").describe(c) == PaDiM().get_params()
