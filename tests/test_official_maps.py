"""Maps for the official evaluators (``--official-maps``, experiments/records/official_maps.py) and MVTec AD 2's
float16 maps written through a documented increasing transform (experiments/records/submission.py
``MapTransform``): the layout the official scripts read, the maps equal to the ones the suite evaluated, the
suite's measures computed from the written files, and what the float16 cast keeps (docs/official_evaluation.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ad_core.data import layouts
from ad_core.data.io import image_size, read_mask
from ad_core.metrics.pixel import area_to_limit, pixel_metrics, pro_curve
from experiments.cli import main
from experiments.definition.config import ConfigError, RunConfig, machine_settings, validate
from experiments.execution.plan import guarded_names
from experiments.records.official_maps import evaluated_samples, official_metrics, read_map
from experiments.records.submission import FLOAT16_TINY, MapTransform, pixel_moments, to_image_size
from tests.test_layouts import SIZE, write_mvtec_ad2, write_mvtec_like

BASE = ["--backbone", "efficientnet_lite0", "--weights", "package", "--scenarios", "clean", "--no-bootstrap",
        "--no-progress"]
AU_PRO_LIMIT = 0.05  # MVTec AD 2's


def au_pro(maps: np.ndarray, masks: np.ndarray, limit: float = AU_PRO_LIMIT) -> float:
    fpr, pro = pro_curve(maps, masks)
    return area_to_limit(fpr, pro, limit)


def seg_f1(predicted: np.ndarray, masks: np.ndarray) -> float:
    """Pooled F1 of binary maps: 2 TP / (2 TP + FP + FN)."""
    tp, fp, fn = (int(np.count_nonzero(a)) for a in (predicted & masks, predicted & ~masks, ~predicted & masks))
    return 2 * tp / (2 * tp + fp + fn)


def full_size_masks(samples) -> np.ndarray:
    return np.stack([read_mask(s.mask, image_size(s.path)) if s.mask is not None else np.zeros(image_size(s.path), bool)
                     for s in samples])


# -- the setting -------------------------------------------------------------------------------------
@pytest.mark.fast
def test_official_maps_is_a_switch_of_the_command_line_never_taken_from_a_recorded_file_nor_guarded():
    assert RunConfig().official_maps is False
    assert "official_maps" in machine_settings()  # what a run writes: from the command line only
    assert "official_maps" not in guarded_names()  # writes maps, changes no number
    with pytest.raises(ConfigError, match=r"^--official-maps with --resize 256 .*centre crop"):
        validate(RunConfig(official_maps=True, resize=256), touch_out=False, load_weights=False)


@pytest.mark.fast
def test_official_maps_with_a_centre_crop_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--official-maps", "--preset", "patchcore-paper", *BASE]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--official-maps with --resize 256" in err, err
    assert not out.exists()


# -- the transform before the float16 cast -------------------------------------------------------------
@pytest.mark.fast
def test_pixel_moments_are_numpys_mean_and_population_sd_of_all_pixels_pooled():
    rng = np.random.default_rng(3)
    maps = [1e3 + rng.standard_normal(shape) for shape in ((5, 7), (40, 48), (1, 1), (0, 3))]
    pooled = np.concatenate([m.ravel() for m in maps])
    n, mean, sd = pixel_moments(maps)
    assert n == pooled.size and mean == pytest.approx(np.mean(pooled), rel=1e-14)
    assert sd == pytest.approx(np.std(pooled), rel=1e-12)


@pytest.mark.fast
def test_the_written_value_keeps_the_order_and_the_side_of_tau_of_every_score():
    t = MapTransform(mean=2.3, sd=0.01, n_images=1, n_pixels=10)
    tau = t.tau
    s = np.array([-1e9, 2.0, np.nextafter(tau, -np.inf), tau, np.nextafter(tau, np.inf), 2.35, 1e9])
    half = t.to_float16(s)
    assert half.dtype == np.float16 and np.isfinite(half).all()
    assert np.all(np.diff(half.astype(np.float64)) >= 0)  # non-decreasing: ties, never a swap
    assert np.array_equal(np.sign(half.astype(np.float64)), np.sign(s - tau))  # the SegF1 side, exactly
    assert half[2] == -FLOAT16_TINY and half[3] == 0 and half[4] == FLOAT16_TINY  # a hair from tau: not 0
    assert half[0] == -65504 and half[-1] == 65504  # clipped to float16's finite range, never inf
    assert half[5] == pytest.approx(2.0, abs=1e-3)  # 2.35 is 2 sd above tau = 2.33
    constant = MapTransform(mean=5.0, sd=0.0, n_images=1, n_pixels=4)  # constant validation maps: scale 1
    assert constant.scale == 1.0 and constant.to_float16(np.array([4.5, 5.0, 5.25])).tolist() == [-0.5, 0.0, 0.25]
    rng = np.random.default_rng(0)
    many = 2.3 + 0.05 * rng.standard_normal(100_000)
    order = np.argsort(many, kind="stable")
    assert np.all(np.diff(t.to_float16(many)[order].astype(np.float64)) >= 0)


@pytest.mark.fast
def test_raw_patchcore_like_distances_lose_their_order_in_float16_and_the_transform_keeps_au_pro():
    """Distances near 2.3 with a spread of 0.01 lie on float16's 2^-9 grid: 8,192 distinct scores become 40 and
    AU-PRO@0.05 moves by more than 1e-3; written as (s - tau) / sd they keep thousands and AU-PRO within 1e-4."""
    rng = np.random.default_rng(0)
    validation = 2.3 + 0.01 * rng.standard_normal((4, 32, 32))
    maps = 2.3 + 0.01 * rng.standard_normal((8, 32, 32))
    masks = np.zeros(maps.shape, bool)
    for i in range(4, 8):
        masks[i, 8:8 + 2 * i, 10:14 + i] = True
    maps[masks] += 0.02 * rng.random(int(masks.sum()))
    transform = MapTransform(*pixel_moments(validation)[1:], n_images=4, n_pixels=validation.size)
    raw, written = maps.astype(np.float16), transform.to_float16(maps)
    distinct = [np.unique(a).size for a in (maps, raw, written)]
    assert distinct[0] == maps.size and distinct[1] < 100 and distinct[2] > 2000, distinct
    reference = au_pro(maps, masks)
    assert abs(au_pro(raw, masks) - reference) > 1e-3
    assert abs(au_pro(written, masks) - reference) < 1e-4
    assert seg_f1(written > 0, masks) == seg_f1(maps > transform.tau, masks)


# -- end to end ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_official_maps_cover_every_test_image_at_its_size_and_hold_the_maps_the_suite_evaluated(tmp_path, caplog,
                                                                                                 monkeypatch):
    from experiments.execution.runner import StudyRun

    monkeypatch.setattr("tests.test_layouts.RNG", np.random.default_rng(0))  # the same images whatever ran before
    root = write_mvtec_like(tmp_path / "data", ("widget",))
    out = tmp_path / "out"
    args = ["run", "--data", str(root), "--out", str(out), *BASE, "--methods", "padim", "dn2"]
    assert main([*args, "--official-maps"]) == 0
    files = layouts.LAYOUTS["mvtec"].discover(root, "widget")
    samples = evaluated_samples(files)
    maps_dir = out / "official_maps" / "padim"
    written = sorted(p.relative_to(maps_dir).as_posix() for p in maps_dir.rglob("*.tiff"))
    # every test image, the ones the study's split puts in validation included: what the official script lists
    assert written == [f"widget/{Path(s.relpath).with_suffix('.tiff').as_posix()}" for s in samples]
    assert len(written) == 7 and not (out / "official_maps" / "dn2").exists()  # DN2 makes no maps
    maps = np.stack([read_map(maps_dir / w, SIZE, maps_dir) for w in written])
    assert maps.dtype == np.float32 and maps.shape == (7, *SIZE)

    # the maps the suite evaluated (its cached 224-px test maps), resized to each image's size
    config = RunConfig.from_json({k: v for k, v in json.loads((out / "config.json").read_text()).items()
                                  if k != "format"})
    run = StudyRun.of(config)
    test = run.scores(run.fitted(run.work.uses[("clean", "padim", None, "widget")]), "widget", "clean", "test")
    by_name = dict(zip(written, maps))
    assert len(test.relpaths) < len(samples)
    for relpath, m in zip(test.relpaths, test.maps):
        assert np.array_equal(by_name[f"widget/{Path(relpath).with_suffix('.tiff').as_posix()}"],
                              to_image_size(m, SIZE))

    # the suite's measures from the written files, as the official scripts see them
    numbers = official_metrics(maps_dir, files)
    masks, labels = full_size_masks(samples), np.array([s.label for s in samples])
    pixel_auroc, pro = pixel_metrics(maps, masks)
    assert numbers["pixel_auroc"] == pixel_auroc and numbers["pro"] == pro
    assert numbers["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert numbers["image_auroc"] == pytest.approx(roc_auc_score(labels, maps.max(axis=(1, 2))), abs=1e-12)
    assert (numbers["images"], numbers["anomalous"], numbers["pixels_per_image"]) == (7, 4, SIZE[0] * SIZE[1])

    caplog.clear()  # a run without the option leaves no maps of an earlier run behind
    with caplog.at_level(logging.WARNING, logger="ad-repro"):
        assert main(args) == 0
    assert not list((out / "official_maps").rglob("*.tiff"))
    assert "removed 7 official map(s) of an earlier run that this run no longer produces" in caplog.text


@pytest.mark.slow
def test_mvtec_ad2_float16_maps_keep_au_pro_within_1e4_and_segf1_exactly(tmp_path, monkeypatch):
    """The public test set written as the server would receive it (float16 through MapTransform): AU-PRO@0.05
    from the written files within 1e-4 of the in-memory maps', every pixel on the same side of tau, the ties the
    cast makes counted with and without the transform; the private sets written with the same transform."""
    import tifffile

    monkeypatch.setattr("tests.test_layouts.RNG", np.random.default_rng(0))  # the same images whatever ran before
    root = write_mvtec_ad2(tmp_path / "ad2")
    out = tmp_path / "out"
    assert main(["run", "--data", str(root), "--out", str(out), *BASE, "--methods", "patchcore", "padim",
                 "--official-maps"]) == 0
    files = layouts.LAYOUTS["mvtec_ad2"].discover(root, "can")
    samples = evaluated_samples(files)
    masks = full_size_masks(samples)
    record = json.loads((out / "official_maps" / "transform.json").read_text())
    assert record == json.loads((out / "submission" / "transform.json").read_text())  # one transform per model
    config = RunConfig.from_json({k: v for k, v in json.loads((out / "config.json").read_text()).items()
                                  if k != "format"})
    from experiments.execution.runner import StudyRun

    run = StudyRun.of(config)
    lines = []
    for method in ("patchcore", "padim"):
        kept = record["methods"][method]["can"]
        # tau and sd: mean + 3 sd of the validation maps at image size, pooled (numpy's mean and std)
        fitted = run.fitted(run.work.uses[("clean", method, None, "can")])
        _, val_maps = fitted.model.score(run.store.batches(files.val_good))
        pooled = np.concatenate([to_image_size(m, SIZE).ravel() for m in val_maps]).astype(np.float64)
        assert kept["mean"] == pytest.approx(np.mean(pooled), rel=1e-12)
        assert kept["sd"] == pytest.approx(np.std(pooled), rel=1e-12)
        assert kept["tau"] == pytest.approx(np.mean(pooled) + 3 * np.std(pooled), rel=1e-12)
        assert kept["tau_written"] == 0.0 and kept["validation_images"] == len(files.val_good) == 4
        transform = MapTransform(kept["mean"], kept["sd"], kept["validation_images"], kept["validation_pixels"])

        folder = out / "official_maps" / method / "can"
        in_memory = np.stack([read_map(folder / Path(s.relpath).with_suffix(".tiff"), SIZE, folder) for s in samples])
        half = np.stack([tifffile.imread(folder / "test_public" / s.defect / f"{Path(s.path).stem}.tiff")
                         for s in samples])
        assert half.dtype == np.float16 and np.array_equal(half, transform.to_float16(in_memory))
        difference = abs(au_pro(half, masks) - au_pro(in_memory, masks))
        assert difference <= 1e-4, (method, difference)
        assert np.array_equal(half > 0, in_memory > kept["tau"])  # SegF1's decision, pixel for pixel
        assert seg_f1(half > 0, masks) == seg_f1(in_memory > kept["tau"], masks)
        order = np.argsort(in_memory.ravel(), kind="stable")
        assert np.all(np.diff(half.ravel()[order].astype(np.float64)) >= 0)  # ties only, no pair swapped
        # ties: distinct values of all pixels, and of the pixels the curve up to FPR 0.05 reads (scores at or
        # above the 95th percentile of the normal pixels), in memory, cast as they are, and transformed first
        top = in_memory >= np.quantile(in_memory[~masks], 0.95)
        distinct = {name: (np.unique(a).size, np.unique(a[top]).size) for name, a in
                    (("in memory", in_memory), ("raw float16", in_memory.astype(np.float16)),
                     ("transformed float16", half))}
        assert distinct["transformed float16"][1] > distinct["raw float16"][1], distinct
        raw = in_memory.astype(np.float16)
        lines.append(f"{method}: AU-PRO@0.05 difference {difference:.2e} (raw float16: "
                     f"{abs(au_pro(raw, masks) - au_pro(in_memory, masks)):.2e}); pixels across tau: 0 (raw float16: "
                     f"{np.count_nonzero((raw > kept['tau']) != (in_memory > kept['tau']))}); distinct values "
                     f"(all, top) {distinct}")

        for set_name in ("test_private", "test_private_mixed"):  # the server's sets, same transform
            for s in files.unlabelled[set_name]:
                written = tifffile.imread(out / "submission" / method / "anomaly_images" / "can" / set_name /
                                          f"{Path(s.path).stem}.tiff")
                _, (m,) = fitted.model.score(run.store.batches([s]))
                assert np.array_equal(written, transform.to_float16(to_image_size(m, SIZE)))
        assert sorted(p.name for p in (out / "submission" / method).iterdir()) == ["anomaly_images"]  # the checker's
    print("\n".join(lines))
