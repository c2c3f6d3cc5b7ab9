"""Proof by extension: a metric, a layout and a method with one hyperparameter, each declared in one file
of a temporary module, run the study end to end with nothing else changed.

The method's hyperparameter is an option of ``ad-repro run --help`` and a key of the recorded
configuration; the metric is in the results, the golden and the report; the layout reads a folder
no built-in reader knows."""

from __future__ import annotations

import csv
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ad_core.data import layouts
from ad_core.metrics import METRICS
from experiments.cli import main
from experiments.definition import methods

pytestmark = pytest.mark.slow

TOY_METRIC = '''
"""A toy metric: the fraction of test images scored above tau."""
import numpy as np

from ad_core.metrics import register
from ad_core.metrics.registry import Metric, Tolerance, measure_of_the_benchmark

register(Metric("toy_flagged", "image", "fraction of test images scored at or above tau",
                Tolerance(lambda s: (1.5 / s.n_test, f"1.5 / {s.n_test}"), "one image crossing tau"),
                direction="none", compute=lambda e: float(np.mean(e.scores >= e.threshold))))
# a benchmark's own measure: computed only where a layout lists it in its Capabilities.measures
register(Metric("toy_own", "image", "the toy benchmark's own: the highest test score",
                Tolerance(lambda s: (0.0, "exact"), "a maximum of the scores", drift=False),
                direction="none", compute=lambda e: float(np.max(e.scores)),
                needs=(measure_of_the_benchmark("toy_own"),)))
'''

TOY_LAYOUT = '''
"""A toy layout: <category>/ok/*.png (the first half trains) and <category>/nok/*.png, image labels only."""
from pathlib import Path

from ad_core.data.layouts import Layout, register
from ad_core.data.layouts.listing import images_in, with_bit_depth
from ad_core.data.samples import NORMAL, Capabilities, CategoryFiles, Sample

OWN = Capabilities(measures=("toy_own",))


def discover(root, category):
    cat = Path(root) / category
    ok = images_in(cat / "ok")
    half = len(ok) // 2
    train = [Sample(f"train/{NORMAL}/{p.name}", p, 0, NORMAL) for p in ok[:half]]
    good = [Sample(f"test/{NORMAL}/{p.name}", p, 0, NORMAL) for p in ok[half:]]
    bad = [Sample(f"test/nok/{p.name}", p, 1, "nok") for p in images_in(cat / "nok")]
    return with_bit_depth(CategoryFiles(Path(root), category, train, good, bad, has_masks=False, defects=["nok"],
                                        layout="toy", capabilities=OWN))


register(Layout("toy", "a toy benchmark", "this test", "ok/, nok/",
                lambda cat: (cat / "ok").is_dir() and (cat / "nok").is_dir(), discover, capabilities=OWN))
'''

TOY_METHOD = '''
"""A toy method: distance of an image's mean layer3 feature to the training mean, raised to a power."""
from dataclasses import dataclass

import numpy as np

from experiments.definition.methods import MethodSpec, register
from experiments.definition.settings import setting


class ToyMean:
    def __init__(self, power: float = 1.0, device: str = "cpu"):
        self.power, self.device = power, device

    def _pooled(self, batches):
        return np.concatenate([b["layer3"].mean(dim=(2, 3)).double().numpy() for b in batches])

    def fit(self, batches):
        self.mean_ = self._pooled(batches).mean(axis=0)
        return self

    def score(self, batches):
        return np.linalg.norm(self._pooled(batches) - self.mean_, axis=1) ** self.power, None

    def save(self, path):
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean_, power=self.power)

    @classmethod
    def load(cls, path, device="cpu"):
        with np.load(path) as d:
            model = cls(float(d["power"]), device)
            model.mean_ = d["mean"]
        return model

    def get_params(self):
        return {"power": self.power}

    def fit_summary(self):
        return {"mean_dims": int(self.mean_.size)}


@dataclass(frozen=True)
class ToySettings:
    power: float = setting(1.0, "the power the distance is raised to", low=0.0, low_open=True)


register(MethodSpec("toy", "toy_method:ToyMean", ".npz", "a toy: distance to the mean feature", ToySettings))
'''


@pytest.fixture
def extended(tmp_path: Path, monkeypatch):
    """The three toy modules imported from a temporary folder (registering their records); removed after."""
    folder = tmp_path / "extension"
    folder.mkdir()
    for name, text in (("toy_metric", TOY_METRIC), ("toy_layout", TOY_LAYOUT), ("toy_method", TOY_METHOD)):
        (folder / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(folder))
    try:
        for name in ("toy_metric", "toy_layout", "toy_method"):
            importlib.import_module(name)
        yield
    finally:
        METRICS.pop("toy_flagged", None)
        METRICS.pop("toy_own", None)
        layouts.unregister("toy")
        methods.unregister("toy")
        for name in ("toy_metric", "toy_layout", "toy_method"):
            sys.modules.pop(name, None)


def write_toy_data(root: Path) -> None:
    """Two categories of 64x64 images: smooth normals, normals with a bright square as defects."""
    rng = np.random.default_rng(0)
    for category in ("discs", "plates"):
        for sub, n in (("ok", 16), ("nok", 6)):
            (root / category / sub).mkdir(parents=True)
            for i in range(n):
                image = (rng.normal(120, 8, (64, 64, 3))).clip(0, 255)
                if sub == "nok":
                    image[20:40, 20:40] = 250
                Image.fromarray(image.astype(np.uint8)).save(root / category / sub / f"{i:03d}.png")


def test_a_metric_a_layout_and_a_method_from_their_own_files_run_the_study(extended, tmp_path, capsys, caplog):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--toy-power" in capsys.readouterr().out

    data, out, golden = tmp_path / "data", tmp_path / "out", tmp_path / "golden"
    write_toy_data(data)
    assert main(["run", "--data", str(data), "--methods", "toy", "padim", "--scenarios", "clean", "--toy-power", "2",
                 "--backbone", "efficientnet_lite0", "--weights", "package", "--image-size", "64",
                 "--out", str(out), "--no-progress", "--no-bootstrap"]) == 0
    assert f"data {data}: layout toy, a toy benchmark" in caplog.text  # detected: no --layout given

    result = json.loads((out / "results" / "clean.json").read_text())
    assert result["config"]["toy"] == {"power": 2.0}  # the hyperparameter reached the model
    toy = result["methods"]["toy"]
    assert set(toy["per_class"]) == {"discs", "plates"}
    for name, per_class in toy["per_class"].items():
        assert 0.0 <= per_class["toy_flagged"] <= 1.0, name
        assert per_class["image_auroc"] > 0.5, name  # a bright square is far from the mean feature
    assert "toy_flagged" in result["methods"]["padim"]["per_class"]["discs"]  # every method gets the metric
    for name, per_class in toy["per_class"].items():  # the benchmark's own measure, on its benchmark
        assert per_class["toy_own"] == pytest.approx(max(float(r["score"]) for r in csv.DictReader(
            (out / "scores" / "clean" / f"toy_{name}.csv").open())), rel=1e-6), name  # the CSV rounds
    assert json.loads((out / "config.json").read_text())["hyperparameters"]["toy"] == {"power": 2.0}
    assert "toy_flagged" in (out / "report.md").read_text()

    assert main(["golden", "record", str(out), str(golden)]) == 0
    recorded = json.loads((golden / "clean.json").read_text())
    assert "toy_flagged" in recorded["tolerances"]
    assert recorded["methods"]["toy"]["discs"]["toy_flagged"] == toy["per_class"]["discs"]["toy_flagged"]
    assert main(["compare", str(golden), str(out)]) == 0
