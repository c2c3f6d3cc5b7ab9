"""The run configuration (experiments.definition.config): every bad value fails when the run is set up -- one line
naming the option, exit 2, nothing computed -- and the defaults are the model constructors' own."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest

from conftest import write_category
from experiments.cli import main
from experiments.definition.config import ConfigError, RunConfig, all_settings, check_seeds, validate
from experiments.definition.methods import METHODS
from experiments.definition.settings import Declared

pytestmark = pytest.mark.fast

UNWRITABLE = "/proc/ad-repro-out"  # not creatable even by root (the CI user), unlike a chmod-ed folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_category(root, "widget", n_train=4, n_test_good=2, defects={"crack": 2})
    return root


def _out_of_bounds(d: Declared) -> list[str]:
    """Values of a declared numeric option outside its declared bounds (every one a refusal)."""
    if d.kind is float:
        return ["nan", *([str(d.decl.low)] if d.decl.low_open else []), *([str(d.decl.high * 2 + 1)]
                                                                           if d.decl.high is not None else [])]
    if d.kind is int and d.decl.low is not None:
        return [str(int(d.decl.low) - 1)]
    return []


def _bad_options(tmp_path: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    junk_weights = tmp_path / "weights.pth"
    junk_weights.write_bytes(b"not a state dict")
    return [
        *[(["--coreset-ratio", v], "coreset-ratio") for v in ("0", "-0.1", "1.5", "nan", "inf")],  # the old flag
        *[([d.flag, bad], d.flag) for d in all_settings() if d.decl.option for bad in _out_of_bounds(d)],
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
    bad = {"patchcore.k": 0, "patchcore.projection_dim": 0, "padim.n_features": 0, "patchcore.reweighting": "max",
           "patchcore.embedding": "wide", "patchcore.blur_sigma": -1.0, "image_size": 0, "resize": 100,
           "split": "half", "feature_memory_gb": math.nan, "workers": 0, "threads": 0, "executor": "ray",
           "methods": ["patchcore", "nope"], "scenarios": ["clean", "dirty"], "dataset": "mnist", "preset": "x",
           "batch_size": True}
    for name, value in bad.items():
        with pytest.raises(ConfigError, match="--" + name.replace("_", "-").replace(".", "-")):
            validate(base.with_settings({name: value}), load_weights=False)
    with pytest.raises(ConfigError, match="--patchcore-k"):  # k=1 zeroes every study-reweighted score
        validate(base.with_settings({"patchcore.k": 1}), load_weights=False)
    with pytest.raises(ConfigError, match="--patchcore-kk: patchcore has no such hyperparameter"):
        validate(base.with_settings({"patchcore.kk": 1}), load_weights=False)
    assert validate(base) is base  # the defaults (with offline weights) are valid


def test_check_seeds_refuses_a_repeated_seed():
    assert check_seeds([42, 43]) == [42, 43]
    with pytest.raises(ConfigError, match="seed 42 is repeated"):
        check_seeds([42, 43, 42])


def test_the_configs_method_defaults_are_the_model_constructors_own():
    """One truth for the study's numbers: each declared hyperparameter and each run setting handed to a
    constructor defaults to the constructor's own default."""
    defaults = RunConfig()
    checked = 0
    for spec in METHODS.values():
        signature = inspect.signature(spec.model_class())
        for arg, value in spec.defaults().items():
            assert value == signature.parameters[arg].default, (spec.name, arg)
            checked += 1
        for name in spec.run_settings:
            if name == "progress":  # a display setting, not a hyperparameter
                continue
            assert getattr(defaults, name) == signature.parameters[name].default, (spec.name, name)
            checked += 1
    assert checked >= 12


def test_the_config_round_trips_through_json(tmp_path):
    config = RunConfig(out=tmp_path, categories=["a"], knn_backend="faiss").with_settings(
        {"patchcore.coreset_ratio": 0.1})
    assert config.get("patchcore.coreset_ratio") == 0.1 and config.get("patchcore.k") == 9
    assert RunConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="unknown setting"):
        RunConfig.from_json({**config.to_json(), "coreset": 0.1})


def test_the_config_file_schema_holds_every_setting_and_the_file_may_set_only_the_study_s():
    """The configuration file's schema is made from the declarations: every RunConfig field and every
    method's hyperparameters; the machine settings are among them (never followed from a file)."""
    from dataclasses import fields

    from experiments.definition.config import RunConfig, config_file_schema, machine_settings

    schema = config_file_schema()
    settings = {f.name for f in fields(RunConfig)}
    assert set(schema.model_fields) - {"format"} == settings
    hyper = schema.model_fields["hyperparameters"].annotation
    assert set(hyper.model_fields) == set(METHODS)
    assert set(machine_settings()) < settings and {"data", "out", "scheduler", "executor"} <= set(machine_settings())


# d3e0155's <out>/config.json (format 1: the hyperparameters as flat fields), as that version wrote it
FORMAT_1 = {"format": 1, "out": "/recorded/out", "data": None, "dataset": "embedded", "layout": "auto",
            "categories": None, "scenarios": None, "methods": ["patchcore", "padim", "dn2"], "preset": "study",
            "backbone": None, "weights": None, "device": "auto", "knn_backend": "auto", "seed": 42, "batch_size": 16,
            "coreset_ratio": 0.1, "k": 7, "projection_dim": 64, "padim_features": 50,
            "patchcore_reweighting": "paper", "patchcore_blur": 4.0, "patchcore_embedding": "original",
            "image_size": 224, "resize": None, "split": "study", "threshold": "auto", "threshold_fpr": 0.01,
            "progress": False, "bootstrap": True, "feature_cache": None, "executor": "local", "scheduler": None,
            "workers": 2, "threads": None, "feature_memory_gb": 4.0}


def test_a_format_1_configuration_still_reads_its_hyperparameters_moved_to_their_method(tmp_path):
    import json

    from experiments.cli import load_config_file
    from experiments.definition.config import read_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps(FORMAT_1))
    read = read_config(path)
    assert read["hyperparameters"] == {
        "patchcore": {"coreset_ratio": 0.1, "k": 7, "projection_dim": 64, "reweighting": "paper", "blur_sigma": 4.0,
                      "embedding": "original"}, "padim": {"n_features": 50}}
    study, machine = load_config_file(path)
    config = RunConfig.from_json(study)
    assert config.get("patchcore.k") == 7 and config.get("padim.n_features") == 50 and config.get("dn2.k") == 2
    assert set(machine) == {"out", "data", "device", "executor", "scheduler", "workers", "threads",
                            "feature_cache", "feature_memory_gb", "progress"}
    path.write_text(json.dumps({**FORMAT_1, "hyperparameters": {}}))  # format 1 never had them
    with pytest.raises(Exception, match="hyperparameters"):
        read_config(path)


def test_a_configuration_round_trips_through_its_file_with_every_hyperparameter(tmp_path):
    import json

    from experiments.definition.config import CONFIG_FORMAT, read_config

    config = RunConfig(out=tmp_path).with_settings({"patchcore.k": 5, "padim.n_features": None, "dn2.k": 3})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"format": CONFIG_FORMAT, **config.to_json()}))
    assert RunConfig.from_json(read_config(path)) == config
    path.write_text(json.dumps({"format": CONFIG_FORMAT, "hyperparameters": {"patchcore": {"kk": 5}}}))
    with pytest.raises(Exception, match="kk"):
        read_config(path)


def test_every_declared_setting_is_an_option_of_run_and_a_key_of_the_config_file():
    from experiments.cli import build_parser
    from experiments.definition.config import config_file_schema

    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith("run"))
    flags = {f for action in run._actions for f in action.option_strings}
    schema = config_file_schema()
    hyper = schema.model_fields["hyperparameters"].annotation
    for d in all_settings():
        assert not d.decl.option or d.flag in flags or d.decl.switch_off in flags, d.name
        method, _, arg = d.name.rpartition(".")
        assert arg in (hyper.model_fields[method].annotation.model_fields if method
                       else schema.model_fields), d.name
