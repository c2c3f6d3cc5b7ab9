"""``MVTEC_ROOT=… pytest -m mvtec``: the paper presets reproduce the published numbers on real MVTec AD,
one case per preset run × category × metric (docs/protocol.md §12).

Each preset runs once per session over every MVTec AD category found under $MVTEC_ROOT (the
``clean`` scenario on the full test set); a case passes when its published value is reproduced
within the reference's band.  WideResNet-50 ImageNet weights come from torchvision's weights API /
the $TORCH_HOME cache, or from a file in $AD_REPRO_WRN50_WEIGHTS.  Without $MVTEC_ROOT every case is
skipped with that reason; a category missing under it is skipped by name.  This is a GPU-box job
(15 categories, WideResNet-50, three runs); ``AD_REPRO_MVTEC_OUT`` keeps the run folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from experiments.definition.config import RunConfig
from experiments.definition.presets import preset_settings
from experiments.evaluation.references import MVTEC_AD_CATEGORIES, load_tables
from experiments.study import run_study

pytestmark = pytest.mark.mvtec

# run name -> (preset, explicit options, the published table it must reproduce)
RUNS = {
    "patchcore-paper-10": ("patchcore-paper", {"patchcore.coreset_ratio": 0.10}, "patchcore-paper/coreset10"),
    "patchcore-paper-1": ("patchcore-paper", {"patchcore.coreset_ratio": 0.01}, "patchcore-paper/coreset1"),
    "padim-paper": ("padim-paper", {}, "padim-paper/wr50_rd550"),
}
CASES = [pytest.param(run, cat, metric, id=f"{run}-{cat}-{metric}")
         for run, (_, _, table) in RUNS.items() for cat, metrics in load_tables()[table].values.items()
         for metric in metrics]


@pytest.fixture(scope="session")
def preset_verdicts(mvtec_root, tmp_path_factory):
    done: dict[str, dict] = {}

    def verdict(run: str) -> dict:
        if run not in done:
            preset, options, _ = RUNS[run]
            base = Path(os.environ.get("AD_REPRO_MVTEC_OUT") or tmp_path_factory.mktemp("mvtec-presets"))
            categories = [c for c in MVTEC_AD_CATEGORIES if (mvtec_root / c).is_dir()]
            config = RunConfig().with_settings(preset_settings(preset, {
                "out": base / run, "data": str(mvtec_root), "categories": categories,
                "weights": os.environ.get("AD_REPRO_WRN50_WEIGHTS"), "progress": False, **options}))
            run_study(config)
            done[run] = json.loads((config.out / "verdict.json").read_text())
        return done[run]

    return verdict


@pytest.mark.parametrize("run,category,metric", CASES)
def test_paper_preset_reproduces_the_published_number(preset_verdicts, mvtec_root, run, category, metric):
    if not (mvtec_root / category).is_dir():
        pytest.skip(f"{category} is not under MVTEC_ROOT={mvtec_root}")
    preset, _, table = RUNS[run]
    method = load_tables()[table].method
    verdict = preset_verdicts(run)["methods"][method]
    assert verdict["reference"] == table and not verdict["setting_differences"], verdict["setting_differences"]
    entry = next(e for e in verdict["entries"] if (e["category"], e["metric"]) == (category, metric))
    assert entry["reproduced"], (
        f"{preset} {category} {metric}: measured {entry['measured']} vs published {entry['reference']} "
        f"(difference {entry['difference']}, band {entry['band']:.4f}: {entry['band_why']}). "
        f"{entry.get('note', '')} Source: {verdict['source']}")
