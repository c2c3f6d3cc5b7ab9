"""ADer's IoU-max, grid F1 and mAD (ad_core.metrics.iou) against numbers ADer's own metric code gave
on a fixed fixture (tests/data/official/ader/reference.json), plus properties of the definition."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ad_core.metrics.iou import (
    ADER_NAMES,
    IOU_MAX_THRESHOLDS,
    MAD_METRICS,
    MID_THRESHOLDS,
    f1_curve,
    f1_max_grid,
    iou_curve,
    iou_max,
    mad,
)

pytestmark = pytest.mark.fast

HERE = Path(__file__).resolve().parent / "data" / "official" / "ader"
REFERENCE = json.loads((HERE / "reference.json").read_text())
# numpy 1.x rounds the threshold to the float32 map's precision (how ADer ran); numpy 2 compares in float64
RUNS = {"numpy_1.26.4": "map", "numpy_2.4.6": "float64"}
CLASSES = ("alpha", "beta")
TOL = 1e-6


def _fixture() -> dict[str, np.ndarray]:
    with np.load(HERE / "fixture.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


FIXTURE = _fixture()


def _class(name: str) -> tuple[np.ndarray, np.ndarray]:
    keep = FIXTURE["classes"] == name
    return FIXTURE["maps"][keep], FIXTURE["masks"][keep]


def _ours(name: str, threshold_dtype: str) -> dict[str, float]:
    maps, masks = _class(name)
    return {
        "mIoU_max_px": iou_max(maps, masks, threshold_dtype),
        "mF1_max_px": f1_max_grid(maps, masks, threshold_dtype),
        "mIoU_px_0.2_0.8_0.1": float(iou_curve(maps, masks, MID_THRESHOLDS, threshold_dtype).mean()),
        "mF1_px_0.2_0.8_0.1": float(f1_curve(maps, masks, MID_THRESHOLDS, threshold_dtype).mean()),
    }


def test_the_fixture_is_what_make_fixture_writes_and_what_ader_was_run_on():
    spec = importlib.util.spec_from_file_location("ader_make_fixture", HERE / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build()
    assert sorted(built) == sorted(FIXTURE)
    for key, arr in built.items():
        assert arr.dtype == FIXTURE[key].dtype and np.array_equal(arr, FIXTURE[key]), key
        digest = hashlib.sha256(np.ascontiguousarray(FIXTURE[key]).tobytes()).hexdigest()
        assert digest == REFERENCE["fixture"]["arrays_sha256"][key], key
    assert FIXTURE["maps"].shape == (12, 64, 96) and FIXTURE["maps"].dtype == np.float32
    assert np.array_equal(FIXTURE["labels"], FIXTURE["masks"].any(axis=(1, 2)))


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("config", ["exact", "adeval"])
def test_grid_metrics_equal_aders_own_code(run, cls, config):
    ref = REFERENCE["runs"][run]["configurations"][config]["per_class"][cls]
    for name, value in _ours(cls, RUNS[run]).items():
        assert value == pytest.approx(ref[name], abs=TOL), (run, cls, name)


@pytest.mark.parametrize("run", list(RUNS))
def test_class_average_equals_aders_avg_row(run):
    ref = REFERENCE["runs"][run]["configurations"]["exact"]["Avg"]
    ours = [_ours(c, RUNS[run]) for c in CLASSES]
    for name in ours[0]:
        assert np.mean([o[name] for o in ours]) == pytest.approx(ref[name], abs=TOL), name


def test_the_fixture_separates_the_two_comparison_rules():
    """numpy 1 and numpy 2 runs of ADer's code differ on alpha's 0.2-0.8 grid; so do our two rules."""
    ref1 = REFERENCE["runs"]["numpy_1.26.4"]["configurations"]["exact"]["per_class"]["alpha"]
    ref2 = REFERENCE["runs"]["numpy_2.4.6"]["configurations"]["exact"]["per_class"]["alpha"]
    assert abs(ref1["mIoU_px_0.2_0.8_0.1"] - ref2["mIoU_px_0.2_0.8_0.1"]) > 1e-3
    maps, masks = _class("alpha")
    a = iou_curve(maps, masks, MID_THRESHOLDS, "map").mean()
    b = iou_curve(maps, masks, MID_THRESHOLDS, "float64").mean()
    assert abs(a - b) > 1e-3


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("config", ["exact", "adeval"])
def test_mad_is_the_mean_of_the_seven_parts_ader_gave(run, config):
    conf = REFERENCE["runs"][run]["configurations"][config]
    for cls in CLASSES:
        assert mad(conf["per_class"][cls]) == pytest.approx(conf["per_class"][cls]["mAD"], abs=1e-12)
    # mAD of the class-averaged metrics == mean of the per-class mAD (linear)
    assert mad(conf["Avg"]) == pytest.approx(conf["Avg"]["mAD"], abs=1e-12)


def test_mad_names_and_units():
    ours = {m: 0.5 + 0.05 * i for i, m in enumerate(MAD_METRICS)}
    theirs = {k: ours[v] for k, v in ADER_NAMES.items() if v in ours}
    assert mad(ours) == pytest.approx(np.mean(list(ours.values())))
    assert mad(theirs) == mad(ours)
    assert mad({k: 100 * v for k, v in ours.items()}) == pytest.approx(100 * mad(ours))
    assert mad({**ours, "iou_max": 0.0}) == mad(ours)  # IoU-max is not part of mAD
    with pytest.raises(KeyError, match="pro"):
        mad({k: v for k, v in ours.items() if k != "pro"})


def test_mad_of_aders_published_mvtec_patchcore_row():
    """ADer's README at 902937a prints mAD 87.2 for PatchCore on MVTec AD (100 epochs); the seven
    published means in experiments/published/ader.json give it back."""
    path = Path(__file__).resolve().parents[1] / "experiments" / "published" / "ader.json"
    means = json.loads(path.read_text())["tables"][0]["published_means"]
    assert round(100 * mad(means), 1) == 87.2


def test_thresholds_are_aders_grids():
    assert len(IOU_MAX_THRESHOLDS) == 21 and IOU_MAX_THRESHOLDS[0] == 0.0 and IOU_MAX_THRESHOLDS[-1] == 1.0
    assert np.allclose(np.diff(IOU_MAX_THRESHOLDS), 0.05)
    assert len(MID_THRESHOLDS) == 7 and np.allclose(MID_THRESHOLDS, [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])


def test_bad_inputs_are_refused():
    maps = np.zeros((2, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="same shape"):
        iou_max(maps, np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        iou_max(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2), dtype=bool))
    with pytest.raises(ValueError, match="threshold_dtype"):
        iou_max(maps, maps.astype(bool), "float32")  # type: ignore[arg-type]
    assert iou_max(maps, np.ones((2, 4, 4), dtype=bool)) == 0.0  # constant maps predict nothing


# ---------------------------------------------------------------- properties

def _direct_iou(maps: np.ndarray, masks: np.ndarray, threshold_dtype: str) -> np.ndarray:
    """The definition spelled out: normalise, compare, pool with logical and/or, per threshold."""
    norm = (maps - maps.min()) / (maps.max() - maps.min())
    out = []
    for t in IOU_MAX_THRESHOLDS:
        pred = norm.astype(np.float64) > t if threshold_dtype == "float64" else norm > norm.dtype.type(t)
        out.append(np.logical_and(pred, masks).sum() / (np.logical_or(pred, masks).sum() + 1e-8))
    return np.array(out)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))


@st.composite
def maps_and_masks(draw, dtype=None, integer_valued=False):
    shape = draw(shapes)
    if integer_valued:
        maps = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 40))).astype(np.float64)
    else:
        dt = dtype or draw(st.sampled_from([np.float32, np.float64]))
        # few distinct values on purpose: ties, and values exactly on thresholds
        pool = st.one_of(st.sampled_from([0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]),
                         st.floats(-2, 2, allow_nan=False, width=32))
        maps = draw(hnp.arrays(dt, shape, elements=pool))
    masks = draw(hnp.arrays(np.bool_, shape))
    return maps, masks


@given(maps_and_masks(), st.sampled_from(["map", "float64"]))
def test_iou_max_is_a_fraction_and_equals_the_direct_definition(data, mode):
    maps, masks = data
    value = iou_max(maps, masks, mode)
    assert 0.0 <= value <= 1.0
    if maps.max() > maps.min():
        assert value == pytest.approx(_direct_iou(maps, masks, mode).max(), abs=1e-12)


@given(maps_and_masks(), st.sampled_from(["map", "float64"]))
def test_iou_max_is_f1_max_over_two_minus_f1_max(data, mode):
    """IoU = F1 / (2 - F1) for the same counts, an increasing map: the maxima correspond."""
    maps, masks = data
    f1 = f1_max_grid(maps, masks, mode)
    assert iou_max(maps, masks, mode) == pytest.approx(f1 / (2 - f1), abs=1e-6)


@given(hnp.arrays(np.bool_, shapes), st.floats(0.01, 100), st.floats(-100, 100))
def test_a_perfect_map_gives_one(masks, scale, shift):
    if masks.all() or not masks.any():
        return  # a perfect map needs both a defect and a normal pixel
    maps = (shift + scale * masks).astype(np.float32)
    assert iou_max(maps, masks) == pytest.approx(1.0, abs=1e-6)
    assert f1_max_grid(maps, masks) == pytest.approx(1.0, abs=1e-6)


@given(maps_and_masks(integer_valued=True), st.integers(-4, 6), st.integers(-1000, 1000))
def test_iou_max_is_invariant_under_exact_affine_rescaling(data, power, shift):
    """Normalisation removes a positive scale and a shift (exact here: integer maps, power-of-2 scale)."""
    maps, masks = data
    moved = maps * 2.0**power + shift
    assert iou_max(moved, masks) == iou_max(maps, masks)


@given(maps_and_masks(), st.randoms(use_true_random=False))
def test_iou_max_is_invariant_under_image_order_and_joint_flips(data, rnd):
    """Pooled over the class: the order of images and a flip of maps and masks together change nothing."""
    maps, masks = data
    order = list(range(len(maps)))
    rnd.shuffle(order)
    base = iou_max(maps, masks)
    assert iou_max(maps[order], masks[order]) == base
    assert iou_max(maps[:, ::-1, ::-1], masks[:, ::-1, ::-1]) == base


@given(maps_and_masks(dtype=np.float64))
def test_the_two_comparison_rules_agree_on_float64_maps(data):
    maps, masks = data
    assert iou_max(maps, masks, "map") == iou_max(maps, masks, "float64")


@given(maps_and_masks())
def test_no_defect_pixel_gives_zero(data):
    maps, _ = data
    assert iou_max(maps, np.zeros(maps.shape, dtype=bool)) == 0.0


# ---------------------------------------------------------------- ADer's other PatchCore tables

MORE = json.loads((Path(__file__).resolve().parents[1] / "experiments" / "published" / "ader_more.json").read_text())


@pytest.mark.parametrize("table", MORE["tables"], ids=lambda t: t["id"])
def test_ader_more_tables_agree_with_their_logs_and_readme(table):
    values = table["values"]
    metrics = set(MAD_METRICS) | {"iou_max"}
    assert all(set(v) == metrics for v in values.values())
    assert all(0.0 <= x <= 1.0 for v in values.values() for x in v.values())
    assert set(metrics) <= set(MORE["metric_definitions"]) and set(metrics) <= set(MORE["bands"])
    for m in metrics:
        mean = np.mean([v[m] for v in values.values()])
        assert mean == pytest.approx(table["log_avg"][m], abs=1e-5), m  # the log's Avg row (both rounded to 5e-6)
        assert abs(100 * table["log_avg"][m] - 100 * table["published_means"][m]) <= 0.05 + 1e-9, m  # README, 1 dp
    for cls, v in values.items():  # IoU = F1 / (2 - F1) on the same pooled counts
        assert v["iou_max"] == pytest.approx(v["pixel_f1_max"] / (2 - v["pixel_f1_max"]), abs=2e-5), cls
    assert round(100 * mad(table["log_avg"]), 1) == round(100 * table["published_mad"]["readme_at_902937a"], 1)
    assert table["setting"]["unified"] is True and table["setting"]["dataset"] in table["id"]


def test_ader_more_names_what_is_missing():
    assert {"visa", "padim", "per_category_counts"} <= set(MORE["missing"])
