"""Planted changes: each edit below, made to a copy of the code, must make the named tests fail.

The table is the suite's claim about what it catches.  ``pytest -m planted`` (by hand, ~3 min
on 2 cores) copies the repository once per row, plants the edit, runs the catching fast
tests in a fresh process and asserts that they fail.  The regression gate (goldens) catches
each of these too where it moves a number beyond its tolerance; the fast tests are named here
because they fail in seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.planted


@dataclass(frozen=True)
class Planted:
    name: str
    file: str
    old: str
    new: str
    catches: tuple[str, ...]  # pytest node ids that must fail


PLANTED = (
    Planted("coreset ratio 5% -> 1%", "experiments/definition/methods.py", "coreset_ratio: float = setting(0.05,",
            "coreset_ratio: float = setting(0.01,", ("tests/test_methods.py::test_defaults_are_the_protocol_numbers",)),
    Planted("PatchCore k 9 -> 1", "experiments/definition/methods.py", "    k: int = setting(9,",
            "    k: int = setting(1,",
            ("tests/test_methods.py::test_defaults_are_the_protocol_numbers",
             "tests/test_methods.py::test_registered_method_fits_scores_and_round_trips",
             "tests/test_config.py::test_the_configs_method_defaults_are_the_model_constructors_own")),
    Planted("kNN backend chosen by a timing", "ad_core/models/kernels/knn.py",
            "        if device.type != \"cuda\":\n            return \"exact\"",
            "        if device.type != \"cuda\":\n"
            "            return \"exact\" if __import__(\"time\").perf_counter() else \"faiss\"",
            ("tests/test_knn.py::test_the_rule_picks_from_the_device_alone_and_never_from_a_timing",)),
    Planted("kNN filter keeps every entry (correct, but no filter)", "ad_core/models/kernels/knn_cpu.py",
            "threshold += 1e-12 * abs(threshold)", "threshold = np.inf",
            ("tests/test_knn_cpu.py::test_the_filter_keeps_few_entries_on_clustered_points",)),
    Planted("a declared bound dropped", "experiments/definition/methods.py",
            "low=0.0, high=1.0, low_open=True,", "",
            ("tests/test_config.py::"
             "test_every_bad_cli_value_is_one_line_naming_the_option_with_exit_2_and_nothing_computed",)),
    Planted("claims counted as holding when not reversed", "experiments/evaluation/statistics.py",
            'holds_in=sum(s["verdict"] == "holds"', 'holds_in=sum(s["verdict"] != "reversed"',
            ("tests/test_experiments.py::test_seeds_share_features_and_report_spread_and_claims",)),
    Planted("image resize without antialiasing", "ad_core/data/preprocess.py", "antialias=True", "antialias=False",
            ("tests/test_preprocess.py::test_resize_is_bilinear_like_pil",)),
    # (v2 resizes a tv_tensors.Mask nearest whatever interpolation it is given: the planted edit
    # must also drop the Mask wrapper, as a hand-written resize would)
    Planted("masks resized bilinear instead of nearest", "ad_core/data/preprocess.py",
            "m = tv_tensors.Mask(torch.from_numpy(mask.astype(np.float32))[None])\n"
            "        out = v2.Compose(self._geometry(v2.InterpolationMode.NEAREST))(m)",
            "m = torch.from_numpy(mask.astype(np.float32))[None]\n"
            "        out = v2.Compose(self._geometry(v2.InterpolationMode.BILINEAR))(m)",
            ("tests/test_preprocess.py::test_mask_is_nearest_resized_and_binary",)),
    Planted("PaDiM image score from the 56x56 grid instead of the map", "ad_core/models/padim.py",
            "return maps.amax(dim=(1, 2)).double().numpy(), maps.numpy()",
            "return self.distances(features).amax(dim=(1, 2)).double().numpy(), maps.numpy()",
            ("tests/test_padim.py::test_distance_is_mahalanobis_and_image_score_is_map_max",
             "tests/test_anomalib_agreement.py::"
             "test_padim_defaults_equal_anomalib_maps_to_1e_4_relative_and_image_scores_in_order")),
    Planted("shift rotation range +-10 deg -> +-1 deg", "ad_core/shift/transform.py", "ROTATION_DEG = 10.0",
            "ROTATION_DEG = 1.0", ("tests/test_shift.py::test_sampled_parameters_fill_the_study_ranges",)),
    Planted("illumination smoothing -> 0", "ad_core/shift/transform.py", "ILLUM_SMOOTH_FRACTION = 80.0 / 1024.0",
            "ILLUM_SMOOTH_FRACTION = 0.0",
            ("tests/test_shift.py::test_illumination_is_smoothed_by_7_8_percent_of_the_side",)),
    Planted("ImageNet normalisation constants changed", "ad_core/data/preprocess.py",
            "IMAGENET_MEAN = (0.485, 0.456, 0.406)", "IMAGENET_MEAN = (0.5, 0.5, 0.5)",
            ("tests/test_preprocess.py::test_constant_image_normalises_to_imagenet_formula",)),
)


def copy_of_repository(dst: Path) -> Path:
    """The tracked and new files of the working tree, without caches, venvs and outputs."""
    ignore = shutil.ignore_patterns(".git", ".venv", "outputs*", "__pycache__", "*.egg-info", ".pytest_cache",
                                    ".hypothesis", ".ruff_cache")
    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


@pytest.mark.parametrize("plant", PLANTED, ids=[p.name for p in PLANTED])
def test_planted_change_is_caught(plant: Planted, tmp_path):
    repo = copy_of_repository(tmp_path / "repo")
    target = repo / plant.file
    source = target.read_text()
    assert source.count(plant.old) == 1, f"{plant.file} no longer holds {plant.old!r}: update the table"
    target.write_text(source.replace(plant.old, plant.new))
    # a fresh interpreter in the copy: `import ad_core` resolves to the planted code (cwd first)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *plant.catches], cwd=repo, capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    assert proc.returncode == 1, f"{plant.name}: the catching tests did not fail ({summary})"
    assert "failed" in summary and "error" not in summary.split("failed")[0], summary
