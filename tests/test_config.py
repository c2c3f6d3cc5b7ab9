"""The run configuration (experiments.config): every bad value fails when the run is set up -- one line
naming the option, exit 2, nothing computed -- and the defaults are the model constructors' own."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest

from conftest import write_category
from experiments.cli import main
from experiments.config import ConfigError, RunConfig, check_seeds, validate
from experiments.methods import METHODS

pytestmark = pytest.mark.fast

UNWRITABLE = "/proc/ad-repro-out"  # not creatable even by root (the CI user), unlike a chmod-ed folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_category(root, "widget", n_train=4, n_test_good=2, defects={"crack": 2})
    return root


def _bad_options(tmp_path: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    junk_weights = tmp_path / "weights.pth"
    junk_weights.write_bytes(b"not a state dict")
    return [
        *[(["--coreset-ratio", v], "--coreset-ratio") for v in ("0", "-0.1", "1.5", "nan", "inf")],
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**32)], "--seed"),
        (["--batch-size", "0"], "--batch-size"),
        (["--device", "cuda"], "--device"),
        (["--device", "cuda:3"], "--device"),
        (["--device", "tpu"], "--device"),
        (["--knn-backend", "annoy"], "--knn-backend"),
        (["--knn-backend", "faiss-gpu"], "--knn-backend"),
        (["--out", str(a_file)], "--out"),
        (["--out", str(a_file / "below")], "--out"),
        (["--out", UNWRITABLE], "--out"),
        (["--categories", "../../x"], "--categories"),
        (["--categories", "widget", "widget"], "--categories"),
        (["--seeds", "42", "42"], "--seeds"),
        (["--seeds", "-3"], "--seeds"),
        (["--weights", str(tmp_path / "missing.pth")], "--weights"),
        (["--weights", str(junk_weights)], "--weights"),
        (["--weights", "package", "--backbone", "resnet18"], "--weights"),
        (["--data", str(tmp_path / "no-such-folder")], "--data"),
    ]


def test_every_bad_cli_value_is_one_line_naming_the_option_with_exit_2_and_nothing_computed(
        tmp_path, data, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # "no CUDA here" also on a GPU machine
    for args, option in _bad_options(tmp_path):
        out = tmp_path / "out"
        argv = ["run", "--data", str(data), "--backbone", "efficientnet_lite0", "--weights", "package",
                "--out", str(out), "--no-progress", *args]
        assert main(argv) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("ad-repro: error: "), (args, err)
        assert option in err, (args, err)
        assert "Traceback" not in err
        assert not (out / "cache").exists() and not (out / "splits").exists(), args  # nothing computed


def test_weights_are_checked_before_any_data_is_written_and_name_the_offline_backbone(tmp_path, data, capsys,
                                                                                     monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no cached ResNet-50 weights
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--out", str(out), "--no-progress"]) == 2  # study: resnet50
    err = capsys.readouterr().err
    assert "--weights" in err and "--backbone efficientnet_lite0 --weights package" in err
    assert not (out / "data").exists() and not (out / "splits").exists()


def test_validate_checks_the_api_fields_the_cli_does_not_expose(tmp_path):
    base = RunConfig(out=tmp_path / "out", backbone="efficientnet_lite0", weights="random")
    bad = {"k": 0, "projection_dim": 0, "padim_features": 0, "patchcore_reweighting": "max",
           "patchcore_embedding": "wide", "patchcore_blur": -1.0, "image_size": 0, "resize": 100,
           "split": "half", "feature_memory_gb": math.nan, "workers": 0, "threads": 0, "executor": "ray",
           "methods": ["patchcore", "nope"], "scenarios": ["clean", "dirty"], "dataset": "mnist", "preset": "x",
           "batch_size": True}
    for name, value in bad.items():
        with pytest.raises(ConfigError, match="--" + name.replace("_", "-")):
            validate(RunConfig(**{**base.__dict__, name: value}), load_weights=False)
    with pytest.raises(ConfigError, match="--k"):  # k=1 zeroes every study-reweighted score
        validate(RunConfig(**{**base.__dict__, "k": 1}), load_weights=False)
    assert validate(base) is base  # the defaults (with offline weights) are valid


def test_check_seeds_refuses_a_repeated_seed():
    assert check_seeds([42, 43]) == [42, 43]
    with pytest.raises(ConfigError, match="seed 42 is repeated"):
        check_seeds([42, 43, 42])


def test_the_configs_method_defaults_are_the_model_constructors_own():
    """One truth for the study's numbers: RunConfig's fields equal each model's constructor defaults."""
    defaults = RunConfig()
    checked = 0
    for spec in METHODS.values():
        signature = inspect.signature(spec.model_class())
        for arg, field_name in spec.config_params.items():
            if field_name == "progress":  # a display setting, not a hyperparameter
                continue
            assert getattr(defaults, field_name) == signature.parameters[arg].default, (spec.name, arg)
            checked += 1
    assert checked >= 10


def test_the_config_round_trips_through_json(tmp_path):
    config = RunConfig(out=tmp_path, categories=["a"], coreset_ratio=0.1, knn_backend="faiss")
    assert RunConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="unknown setting"):
        RunConfig.from_json({**config.to_json(), "coreset": 0.1})


def test_the_config_file_schema_holds_every_setting_and_the_file_may_set_only_the_study_s():
    """experiments/readers.ConfigFile types every RunConfig field (a new setting is read from a file only
    once it is typed there), and MACHINE_SETTINGS are among them (never followed from a file)."""
    from dataclasses import fields

    from experiments.config import MACHINE_SETTINGS, RunConfig
    from experiments.readers import ConfigFile

    settings = {f.name for f in fields(RunConfig)}
    assert set(ConfigFile.model_fields) - {"format"} == settings
    assert set(MACHINE_SETTINGS) < settings and {"data", "out", "scheduler", "executor"} <= set(MACHINE_SETTINGS)
