"""sPRO and AUC-sPRO (ad_core.metrics.spro) against MVTec's official MVTec LOCO AD evaluation.

tests/data/official/loco holds a small object in the official layout (make_fixture.py) and the numbers
the official script printed for it (reference.json: its source, command and versions); the notes on
the definition are docs/official_measures.md.  Properties: with saturation = area and connected,
separate regions sPRO is PRO (ad_core.metrics.pixel); the exact curve ignores any increasing transform
of the scores; the two ways of computing the curve agree; areas lie in [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.ndimage import label as nd_label

from ad_core.errors import FileFormatError, UndefinedMetricError
from ad_core.metrics.image import image_auroc
from ad_core.metrics.pixel import pro_score
from ad_core.metrics.spro import (
    OFFICIAL_FPR_LIMITS,
    DefectType,
    Region,
    auc_spro,
    loco_auc_spro,
    official_thresholds,
    read_defects_config,
    region_of_channel,
    saturation_pixels,
    spro_curve,
)

pytestmark = pytest.mark.fast

FIXTURE = Path(__file__).parent / "data" / "official" / "loco"
OBJECT = "pushpins"
REFERENCE = json.loads((FIXTURE / "reference.json").read_text())


def read_object() -> tuple[np.ndarray, list[list[Region]], list[str]]:
    """maps (N, H, W), regions and kinds of the fixture, in the order the official script reads them:
    test folders sorted, files sorted; a map's ground truth is ground_truth/<kind>/<stem>/*.png, sorted."""
    defects = read_defects_config(FIXTURE / "mvtec_loco" / OBJECT / "defects_config.json")
    test = FIXTURE / "anomaly_maps" / OBJECT / "test"
    maps, regions, kinds = [], [], []
    for kind_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        for tiff in sorted(kind_dir.glob("*.tiff")):
            maps.append(tifffile.imread(tiff))
            gt = FIXTURE / "mvtec_loco" / OBJECT / "ground_truth" / kind_dir.name / tiff.stem
            regions.append([region_of_channel(np.array(Image.open(png)), defects) for png in sorted(gt.glob("*.png"))])
            kinds.append(kind_dir.name)
    return np.stack(maps), regions, kinds


@pytest.fixture(scope="module")
def loco() -> tuple[np.ndarray, list[list[Region]], list[str]]:
    return read_object()


def test_fixture_is_what_the_notes_say(loco):
    maps, regions, kinds = loco
    assert maps.dtype == np.float32 and maps.shape == (13, 100, 170)
    assert kinds.count("good") == 5 and kinds.count("logical_anomalies") == kinds.count("structural_anomalies") == 4
    assert sum(len(r) for r in regions) == 14 and all(len(r) == 0 for r, k in zip(regions, kinds) if k == "good")
    overlapping = [i for i, r in enumerate(regions) if len(r) > 1 and np.sum([x.mask for x in r], 0).max() > 1]
    assert len(overlapping) == 2
    assert np.unique(maps).size < maps.size / 50  # ties
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 1.5e6


@pytest.mark.parametrize("run", REFERENCE["runs"], ids=lambda r: f"max_distance={r['curve_max_distance']}")
def test_auc_spro_equals_the_official_script(loco, run):
    maps, regions, kinds = loco
    recorded = run["metrics"]["localization"]["auc_spro"]
    ours = loco_auc_spro(maps, regions, kinds, OFFICIAL_FPR_LIMITS, max_distance=run["curve_max_distance"])
    assert set(ours) == set(recorded) == {"logical_anomalies", "structural_anomalies", "mean"}
    for kind, by_limit in recorded.items():
        assert set(by_limit) == {str(limit) for limit in OFFICIAL_FPR_LIMITS}
        for limit in OFFICIAL_FPR_LIMITS:
            assert ours[kind][limit] == pytest.approx(by_limit[str(limit)], abs=1e-6), (kind, limit)


@pytest.mark.parametrize("run", REFERENCE["runs"], ids=lambda r: f"max_distance={r['curve_max_distance']}")
def test_image_auroc_equals_the_official_script(loco, run):
    """The script's image score is the map's maximum; good images against each kind (no tied maxima here,
    where its ROC would differ from the usual one: NOTES.md)."""
    maps, _, kinds = loco
    recorded = run["metrics"]["classification"]["auc_roc"]
    top = maps.reshape(len(maps), -1).max(axis=1)
    ours = {}
    for kind in ("logical_anomalies", "structural_anomalies"):
        take = np.array([k in (kind, "good") for k in kinds])
        ours[kind] = image_auroc(top[take], np.array([k == kind for k in kinds])[take])
        assert ours[kind] == pytest.approx(recorded[kind], abs=1e-6)
    assert 0.5 * (ours["logical_anomalies"] + ours["structural_anomalies"]) == pytest.approx(recorded["mean"], abs=1e-6)


def test_exact_curve_is_close_to_the_official_one(loco):
    """The script's ~1000 thresholds approximate the curve: on the fixture within 1e-4 of the exact area,
    but not within 1e-6 (which is why loco_auc_spro follows its thresholds)."""
    maps, regions, kinds = loco
    official = loco_auc_spro(maps, regions, kinds)
    exact = loco_auc_spro(maps, regions, kinds, exact=True)
    gaps = [abs(official[k][lim] - exact[k][lim]) for k in official for lim in OFFICIAL_FPR_LIMITS]
    assert max(gaps) < 1e-4 and max(gaps) > 1e-6
    thresholds = official_thresholds(maps, regions)
    assert 50 <= thresholds.size <= 50 + 10 * 100 and np.all(np.diff(thresholds) < 0)


def test_saturation_as_the_script_computes_it():
    relative = DefectType("color", 252, 0.35, True)
    absolute = DefectType("missing", 255, 60, False)
    assert saturation_pixels(11, relative) == 3 and saturation_pixels(1609, relative) == 563  # int(): rounded down
    assert saturation_pixels(25, absolute) == 25 and saturation_pixels(94, absolute) == 60  # min(threshold, area)
    channel = np.zeros((4, 5), dtype=np.uint8)
    channel[1:3, 1:4] = 252
    region = region_of_channel(channel, {252: relative})
    assert region.saturation == 2 and region.defect == "color" and region.mask.sum() == 6
    channel[0, 0] = 255
    with pytest.raises(ValueError, match="one defect value"):
        region_of_channel(channel, {252: relative, 255: absolute})
    with pytest.raises(ValueError, match="no defect type"):
        region_of_channel(np.where(channel == 255, 7, 0).astype(np.uint8), {252: relative})


def test_defects_config_reader(tmp_path):
    good = read_defects_config(FIXTURE / "mvtec_loco" / OBJECT / "defects_config.json")
    assert sorted(good) == [251, 252, 253, 254, 255]
    assert good[255] == DefectType("missing_pushpin", 255, 300, False)
    assert good[252] == DefectType("color", 252, 0.35, True)
    entry = {"defect_name": "a", "pixel_value": 255, "saturation_threshold": 1.0, "relative_saturation": True}
    damaged = {
        "truncated": '[{"defect_name": "a", "pixel_',
        "not a list": json.dumps(entry),
        "missing field": json.dumps([{k: v for k, v in entry.items() if k != "pixel_value"}]),
        "relative as int": json.dumps([{**entry, "saturation_threshold": 1}]),
        "absolute as float": json.dumps([{**entry, "saturation_threshold": 50.0, "relative_saturation": False}]),
        "pixel 0": json.dumps([{**entry, "pixel_value": 0}]),
        "twice": json.dumps([entry, {**entry, "defect_name": "b"}]),
        "duplicate key": '[{"defect_name": "a", "defect_name": "b", "pixel_value": 1, '
                         '"saturation_threshold": 1.0, "relative_saturation": true}]',
    }
    for what, text in damaged.items():
        path = tmp_path / f"{what.replace(' ', '_')}.json"
        path.write_text(text)
        with pytest.raises(FileFormatError) as err:
            read_defects_config(path)
        message = str(err.value)
        assert str(path) in message and "\n" not in message, what
    with pytest.raises(FileFormatError, match="does not exist"):
        read_defects_config(tmp_path / "absent.json")


def test_undefined_and_refused_inputs():
    maps = np.random.default_rng(0).random((2, 4, 4))
    with pytest.raises(UndefinedMetricError):
        auc_spro(maps, [[], []])
    full = np.ones((4, 4), dtype=bool)
    with pytest.raises(UndefinedMetricError):
        auc_spro(maps, [[(full, 16.0)], [(full, 16.0)]])
    with pytest.raises(ValueError, match="no resizing"):
        auc_spro(maps, [[(np.ones((2, 2), dtype=bool), 1.0)], []])
    with pytest.raises(ValueError, match="empty"):
        auc_spro(maps, [[(np.zeros((4, 4), dtype=bool), 1.0)], []])
    corner = np.zeros((4, 4), dtype=bool)
    corner[0, 0] = True
    with pytest.raises(ValueError, match="run from 0 to 1"):
        auc_spro(maps, [[(corner, 1.0)], []], thresholds=np.array([0.5]))


# -- properties -----------------------------------------------------------------------------------
cases = st.tuples(st.integers(1, 3), st.integers(3, 8), st.integers(3, 8), st.integers(0, 2**32 - 1),
                  st.sampled_from([4, 16, 1000]), st.floats(0.1, 0.5))


def make_case(n, h, w, seed, levels, density):
    """Integer-valued maps (ties when ``levels`` is small) and the 8-connected components of random masks
    as regions; at least one region and one normal pixel."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) < density
    masks[0, 0, 0], masks[-1, -1, -1] = True, False
    maps = rng.integers(0, levels, size=(n, h, w)).astype(np.float64) + (levels // 4) * masks
    components = []
    for m in masks:
        lab, k = nd_label(m, structure=np.ones((3, 3)))
        components.append([lab == r for r in range(1, k + 1)])
    return maps, masks, components


@settings(max_examples=60)
@given(cases, st.sampled_from([0.05, 0.3, 1.0]))
def test_saturation_at_the_area_is_pro(case, limit):
    maps, masks, components = make_case(*case)
    regions = [[(c, float(c.sum())) for c in image] for image in components]
    assert auc_spro(maps, regions, limit) == pytest.approx(pro_score(maps, masks, limit), abs=1e-9)


@settings(max_examples=60)
@given(cases, st.integers(1, 6))
def test_exact_curve_ignores_increasing_transforms(case, saturation):
    maps, _, components = make_case(*case)
    regions = [[(c, float(min(saturation, c.sum()))) for c in image] for image in components]
    transformed = np.exp(maps / 7.0) + maps**3  # strictly increasing, distinct values stay distinct
    for limit in (0.05, 0.3, 1.0):
        assert auc_spro(transformed, regions, limit) == pytest.approx(auc_spro(maps, regions, limit), abs=1e-12)


@settings(max_examples=60)
@given(cases, st.integers(1, 6))
def test_exact_curve_is_the_curve_at_every_score(case, saturation):
    """One sort and cumulative gains (exact) = counting "score > t" just below each distinct score."""
    maps, _, components = make_case(*case)
    regions = [[(c, float(min(saturation, c.sum()))) for c in image] for image in components]
    fpr, spro = spro_curve(maps, regions)
    distinct = np.unique(maps)
    below = np.append(np.nextafter(distinct, -np.inf), distinct[-1])  # and one at the top: (0, 0)
    fpr_t, spro_t = spro_curve(maps, regions, thresholds=below)
    np.testing.assert_allclose(fpr, fpr_t, atol=1e-12)
    np.testing.assert_allclose(spro, spro_t, atol=1e-12)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(spro) >= -1e-12)


@settings(max_examples=40)
@given(cases, st.integers(1, 6), st.sampled_from([0.01, 0.05, 0.3, 1.0]))
def test_areas_lie_in_the_unit_interval_and_saturation_only_helps(case, saturation, limit):
    maps, _, components = make_case(*case)
    loose = [[(c, float(c.sum())) for c in image] for image in components]
    tight = [[(c, float(min(saturation, c.sum()))) for c in image] for image in components]
    exact_loose, exact_tight = auc_spro(maps, loose, limit), auc_spro(maps, tight, limit)
    assert 0 <= exact_loose <= exact_tight + 1e-12 <= 1 + 2e-12
    official = auc_spro(maps, tight, limit, thresholds=official_thresholds(maps, tight))
    assert 0 <= official <= 1 + 1e-12
