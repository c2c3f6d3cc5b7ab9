"""MVTec AD 2's AU-PRO@0.05 and SegF1 (ad_core/metrics/segmentation.py) against MVTec's own evaluation code.

The fixture (tests/data/official/mvtec_ad2/, written by its make_fixture.py) is one object in MVTec AD 2's layout
with maps in the server's float16 TIFF format; reference.json holds what MVTec's evaluation code printed on it
(AU-PRO) and the SegF1 of the checker's baseline threshold (no official SegF1 code is public; reference.json says
how that number was made).  Property tests hold the definitions themselves.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import f1_score

from ad_core.data import layouts
from ad_core.errors import UndefinedMetricError
from ad_core.metrics.pixel import pixel_scores, pro_score
from ad_core.metrics.segmentation import (
    AU_PRO_LIMIT,
    as_submitted,
    au_pro,
    binarize,
    seg_f1,
    validation_threshold,
)
from tests.test_metrics import brute_force_pro

pytestmark = pytest.mark.fast

FIXTURE = Path(__file__).parent / "data" / "official" / "mvtec_ad2"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text())["values"]
OBJECT = "can"


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.png"))


def load_fixture() -> dict[str, np.ndarray]:
    """The fixture as MVTec's script reads it: test maps good then bad (sorted), masks (0/255 PNG > 0), validation."""
    data = FIXTURE / "dataset" / OBJECT
    maps_dir = FIXTURE / "experiment" / "anomaly_images" / OBJECT
    bin_dir = FIXTURE / "experiment" / "anomaly_images_thresholded" / OBJECT
    maps, masks, binary = [], [], []
    for sub in ("good", "bad"):
        for stem in _stems(data / "test_public" / sub):
            m = tifffile.imread(maps_dir / "test_public" / sub / f"{stem}.tiff")
            maps.append(m)
            binary.append(np.asarray(Image.open(bin_dir / "test_public" / sub / f"{stem}.png")))
            if sub == "good":
                masks.append(np.zeros(m.shape, bool))
            else:
                mask_file = data / "test_public" / "ground_truth" / "bad" / f"{stem}_mask.png"
                masks.append(np.asarray(Image.open(mask_file)) > 0)
    validation = [tifffile.imread(maps_dir / "validation" / "good" / f"{s}.tiff")
                  for s in _stems(data / "validation" / "good")]
    return {"maps": np.stack(maps), "masks": np.stack(masks), "binary": np.stack(binary),
            "validation": np.stack(validation)}


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    return load_fixture()


# --- the fixture against the official numbers ---------------------------------------------------------------

def test_the_fixture_is_in_the_servers_format(fixture):
    assert fixture["maps"].dtype == np.float16 and fixture["validation"].dtype == np.float16
    assert fixture["maps"].shape == (10, 128, 279) and fixture["masks"].sum() > 0
    assert set(np.unique(fixture["binary"])) <= {0, 255}
    assert len(np.unique(fixture["maps"])) < fixture["maps"].size // 10  # float16, plateaus, blocks: many ties


def test_au_pro_at_0_05_equals_mvtec_evaluation_code(fixture):
    assert AU_PRO_LIMIT == 0.05
    assert au_pro(fixture["maps"], fixture["masks"]) == pytest.approx(REFERENCE["au_pro_0.05"], abs=1e-6)


def test_au_pro_at_0_3_equals_mvtec_evaluation_code_and_the_projects_pro(fixture):
    value = au_pro(fixture["maps"], fixture["masks"], 0.3)
    assert value == pytest.approx(REFERENCE["au_pro_0.3"], abs=1e-6)
    assert value == pro_score(fixture["maps"], fixture["masks"])


def test_threshold_is_the_checkers_baseline_on_the_validation_maps(fixture):
    tau = validation_threshold(fixture["validation"])
    assert tau == pytest.approx(REFERENCE["tau"], abs=1e-6)
    assert validation_threshold(list(fixture["validation"])) == tau  # a sequence of maps, pooled the same


def test_seg_f1_equals_the_reference(fixture):
    tau = validation_threshold(fixture["validation"])
    assert seg_f1(fixture["maps"], fixture["masks"], tau) == pytest.approx(REFERENCE["seg_f1"], abs=1e-6)


def test_seg_f1_of_the_thresholded_pngs_the_server_reads_is_the_same(fixture):
    tau = validation_threshold(fixture["validation"])
    assert np.array_equal(fixture["binary"] > 0, binarize(fixture["maps"], tau))
    value = seg_f1(fixture["binary"] / 255.0, fixture["masks"], 0.5)
    assert value == pytest.approx(REFERENCE["seg_f1"], abs=1e-6)


def test_the_fixture_is_what_make_fixture_builds(fixture):
    spec = importlib.util.spec_from_file_location("ad2_make_fixture", FIXTURE / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build()
    assert np.array_equal(np.stack(built["good"] + built["bad"]), fixture["maps"])
    assert np.array_equal(np.stack(built["validation"]), fixture["validation"])
    assert np.array_equal(np.stack([np.zeros_like(built["masks"][0])] * 4 + built["masks"]), fixture["masks"])
    assert np.array_equal(np.stack(built["thresholded"]), fixture["binary"])
    assert built["tau"] == REFERENCE["tau"]


def test_the_projects_mvtec_ad2_reader_reads_the_fixture():
    files = layouts.LAYOUTS["mvtec_ad2"].discover(FIXTURE / "dataset", OBJECT)
    assert (len(files.val_good), len(files.test_good), len(files.test_anomalous)) == (4, 4, 6)


# --- the definitions -------------------------------------------------------------------------------------

cases = st.tuples(st.integers(1, 3), st.integers(3, 8), st.integers(3, 8), st.integers(0, 2**32 - 1),
                  st.booleans())


def _case(n: int, h: int, w: int, seed: int, coarse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Masks with at least one defect and one normal pixel; scores k/64 (coarse: k/4, many ties)."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) < 0.3
    masks[0, 0, 0] = True
    masks[-1, -1, -1] = False
    steps = 4 if coarse else 64
    maps = np.round((rng.random((n, h, w)) + 0.6 * masks) * steps) / steps
    return maps, masks


@settings(max_examples=60, deadline=None)
@given(cases, st.sampled_from([0.05, 0.1, 0.3, 1.0]))
def test_au_pro_is_invariant_to_strictly_increasing_transforms(case, limit):
    maps, masks = _case(*case)
    value = au_pro(maps, masks, limit)
    assert 0.0 <= value <= 1.0 + 1e-12
    for transformed in (3 * maps - 7, maps ** 3 + maps, np.exp(2 * maps), as_submitted(maps)):
        assert au_pro(transformed, masks, limit) == pytest.approx(value, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_au_pro_at_0_3_equals_the_existing_pixel_pro(case):
    maps, masks = _case(*case)
    assert au_pro(maps, masks, 0.3) == pro_score(maps, masks) == pixel_scores(maps, masks)["pro"]


@settings(max_examples=40, deadline=None)
@given(cases, st.sampled_from([0.05, 0.2, 0.3]))
def test_au_pro_equals_the_threshold_by_threshold_definition(case, limit):
    maps, masks = _case(*case)
    assert au_pro(maps, masks, limit) == pytest.approx(brute_force_pro(maps, masks, limit), abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(cases, st.floats(-0.5, 2.0, allow_nan=False))
def test_seg_f1_is_in_the_unit_interval_and_is_pooled_pixel_f1(case, threshold):
    maps, masks = _case(*case)
    value = seg_f1(maps, masks, threshold)
    assert 0.0 <= value <= 1.0
    expected = f1_score(masks.ravel(), (maps > threshold).ravel(), zero_division=0.0)
    assert value == pytest.approx(expected, abs=1e-12)
    order = np.random.default_rng(case[3]).permutation(len(maps))
    assert seg_f1(maps[order], masks[order], threshold) == value  # pooled: the images' order is no matter


@settings(max_examples=40, deadline=None)
@given(cases)
def test_threshold_is_mean_plus_three_population_sd_of_all_validation_pixels(case):
    maps, _ = _case(*case)
    pixels = maps.ravel().astype(np.float64)
    assert validation_threshold(maps) == pytest.approx(pixels.mean() + 3 * pixels.std(ddof=0), rel=1e-12)
    assert validation_threshold([m[:, : max(1, m.shape[1] // 2)] for m in maps]) == pytest.approx(
        validation_threshold(np.concatenate([m[:, : max(1, m.shape[1] // 2)].ravel() for m in maps])), rel=1e-12)


def test_a_score_equal_to_the_threshold_is_normal():
    masks = np.zeros((1, 2, 2), bool)
    masks[0, 0, 0] = True
    maps = np.array([[[0.5, 0.5], [0.2, 0.1]]])
    assert seg_f1(maps, masks, 0.5) == 0.0  # nothing is > 0.5
    assert seg_f1(maps, masks, 0.4) == pytest.approx(2 / 3)  # TP 1, FP 1, FN 0


def test_seg_f1_without_defect_pixels_is_undefined_and_bad_inputs_are_refused():
    maps = np.zeros((1, 3, 3))
    with pytest.raises(UndefinedMetricError):
        seg_f1(maps, np.zeros((1, 3, 3), bool), 0.5)
    with pytest.raises(ValueError, match="finite"):
        seg_f1(maps, np.ones((1, 3, 3), bool), float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        validation_threshold(np.array([[[np.inf]]]))
    with pytest.raises(ValueError, match="none given"):
        validation_threshold([])
    with pytest.raises(ValueError, match="float16"):
        as_submitted(np.array([[[1e6]]]))
