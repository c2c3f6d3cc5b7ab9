"""The scenario runner on a tiny embedded-style dataset: artifacts, determinism, resume, guards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ad_core.data.embedded import EmbeddedSpec, make_embedded_dataset
from ad_core.errors import DatasetError
from ad_core.metrics import of_levels
from ad_core.models import PaDiM
from conftest import metrics_only, seal_results
from experiments.cli import main
from experiments.definition.config import RunConfig
from experiments.definition.scenarios import SCENARIOS, Scenario, select
from experiments.execution.runner import StudyRun
from experiments.study import run_seeds, run_study

# whole-study runs (the shared first_run alone takes ~18 s): slow; the rest fast

SCEN = ["clean", "shift_threshold_only", "unified", "absolute_unified", "coreset_ablation"]
SHORT = ["clean", "shift_threshold_only"]  # both domains, every kind of model input: enough for reruns


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    spec = EmbeddedSpec(n_train_good=10, n_test_good=4, n_per_defect=1, size=96)
    return make_embedded_dataset(tmp_path_factory.mktemp("tiny"), spec, categories=("brick", "coffee"))


def config(out, data, **kw):
    return RunConfig(out=out, data=str(data), backbone="efficientnet_lite0", progress=False,
                     scenarios=kw.pop("scenarios", SCEN), **kw)


def first_run_data_name(out):
    return json.loads((out / "run_config.json").read_text())["dataset"]


@pytest.fixture(scope="module")
def first_run(tiny_data, tmp_path_factory):
    """The shared run: read it, never write into it (copy it first: ``first_run_copy``)."""
    out = tmp_path_factory.mktemp("run")
    results, timings = run_study(config(out, tiny_data))
    return out, [r.to_json() for r in results], timings


@pytest.fixture
def first_run_copy(first_run, tmp_path):
    """A private copy of the shared run's folder (caches included), for tests that run into it."""
    import shutil

    out = tmp_path / "run-copy"
    shutil.copytree(first_run[0], out)
    return out


@pytest.mark.fast
def test_scenarios_are_records_with_the_study_settings():
    assert list(SCENARIOS) == ["clean", "shift_no_adaptation", "shift_threshold_only", "shift_full_adaptation",
                               "unified", "absolute_unified", "coreset_ablation"]
    s = SCENARIOS["shift_threshold_only"]
    assert (s.fit_domain, s.calib_domain, s.eval_domain) == ("clean", "shift", "shift")
    assert SCENARIOS["coreset_ablation"].coreset_ratios == (0.01, 0.05, 0.10)
    assert SCENARIOS["absolute_unified"].global_threshold and SCENARIOS["unified"].shortcut_analysis
    assert all(isinstance(x, Scenario) for x in select(None))
    with pytest.raises(ValueError, match="unknown scenario"):
        select(["nope"])


@pytest.mark.slow
def test_every_artifact_is_written(first_run):
    out, results, timings = first_run
    assert [r["scenario"] for r in results] == SCEN
    for name in SCEN:
        res = json.loads((out / "results" / f"{name}.json").read_text())
        assert (out / "thresholds" / f"{name}.json").is_file()
        for method, m in res["methods"].items():
            assert set(m["per_class"]) == {"brick", "coffee"}
            for pc in m["per_class"].values():
                pixel = ("pixel_auroc", "pro") if method != "dn2" else ()  # DN2 makes no maps: absent, with why
                study_image = [m.name for m in of_levels("image") if m.origin == "study"]
                for key in (*study_image, "threshold", *pixel):
                    assert isinstance(pc[key], float) and np.isfinite(pc[key]), (name, method, key)
                if not pixel:
                    assert pc["pixel_auroc"] is pc["pro"] is None and "no anomaly maps" in pc["pixel_metrics_absent"]
            per_class_auroc = [pc["image_auroc"] for pc in m["per_class"].values()]
            assert m["mean"]["image_auroc"] == pytest.approx(np.mean(per_class_auroc))
    assert (out / "results" / "summary.csv").read_text().startswith("scenario,method,category,image_auroc")
    assert (out / "scores" / "clean" / "patchcore_brick.csv").read_text().startswith("relpath,label,score")
    for f in ("patchcore_brick_clean.npy", "padim_brick_clean.pt", "patchcore_unified_clean.npy",
              "patchcore_brick_shift_coreset_01.npy", "patchcore_brick_shift_coreset_10.npy"):
        assert (out / "models" / f).is_file(), f
    for f in ("roc_clean.png", "confusion_clean.png", "overlays_clean_patchcore.png",
              "coreset_tradeoff_coreset_ablation.png", "cross_class_unified_patchcore.png"):
        assert (out / "visualizations" / f).stat().st_size > 1000, f
    report = (out / "report.md").read_text()
    assert "## coreset_ablation" in report and "coreset_tradeoff_coreset_ablation.png" in report
    for r in results:  # every figure a scenario lists exists and the report shows it
        assert r["figures"] and all((out / f).is_file() and f"({f})" in report for f in r["figures"])
    assert (out / "splits" / "brick.json").is_file()
    assert (out / "data" / f"{first_run_data_name(out)}-shift" / "brick" / "shift_params.json").is_file()
    assert timings["features_computed"] == 2 * 2 * (10 + 4 + 5)  # each image once per domain


@pytest.mark.slow
def test_scenario_semantics(first_run):
    out, results, _ = first_run
    by = {r["scenario"]: r for r in results}
    pc = by["clean"]["methods"]["patchcore"]["per_class"]["brick"]
    taus = json.loads((out / "thresholds" / "shift_threshold_only.json").read_text())
    clean_taus = json.loads((out / "thresholds" / "clean.json").read_text())
    assert taus["patchcore"]["brick"] != clean_taus["patchcore"]["brick"]  # re-calibrated on Val-shift
    abs_taus = json.loads((out / "thresholds" / "absolute_unified.json").read_text())["padim"]
    assert len(set(abs_taus.values())) == 1  # one global tau
    assert "pooled" in by["absolute_unified"]["methods"]["padim"]
    shortcut = by["unified"]["methods"]["patchcore"]["shortcut"]
    assert set(shortcut["cross_class_confusion"]) == {"brick", "coffee"}
    assert shortcut["feature_separation"]["centroid_accuracy"] > 0.9  # brick and coffee look nothing alike
    ab = by["coreset_ablation"]["methods"]
    banks = [ab[f"patchcore@rho={r}"]["per_class"]["brick"]["memory_bank_size"] for r in ("0.01", "0.05", "0.1")]
    n = 8 * 784
    assert banks == [int(0.01 * n), int(0.05 * n), int(0.10 * n)]
    # rho=5% of the ablation is the full-adaptation model: the same file, fit once
    assert ab["patchcore@rho=0.05"]["per_class"]["brick"]["fit_seconds"] == json.loads(
        (out / "models" / "patchcore_brick_shift.fit.json").read_text())["fit_seconds"]
    # one greedy run per training set: 5% and 1% are prefixes of the 10% coreset, timed on its timeline
    records = {r: json.loads((out / "models" / f"patchcore_brick_shift{s}.fit.json").read_text())
               for r, s in ((0.01, "_coreset_01"), (0.05, ""), (0.10, "_coreset_10"))}
    assert "prefix_of" not in records[0.10]
    assert records[0.05]["prefix_of"] == records[0.01]["prefix_of"] == "patchcore_brick_shift_coreset_10"
    assert 0 < records[0.01]["fit_seconds"] <= records[0.05]["fit_seconds"] <= records[0.10]["fit_seconds"]
    assert pc["confusion"][0][0] + pc["confusion"][0][1] == 4


@pytest.mark.fast
def test_ablation_scores_its_prefix_banks_in_one_search(tiny_data, tmp_path, monkeypatch):
    # the 1% and 5% banks are prefixes of the 10% one: each split is searched once, over the 10%
    # bank's rows, and every prefix model's cached scores equal that model scored alone
    from ad_core.models.kernels.knn import NearestNeighbours
    searched = []
    original = NearestNeighbours.search
    monkeypatch.setattr(NearestNeighbours, "search",
                        lambda self, q, k: searched.append(len(q) * self.size) or original(self, q, k))
    cfg = config(tmp_path / "ablation", tiny_data, scenarios=["coreset_ablation"], methods=["patchcore"])
    run_study(cfg)
    work = sum(searched)  # query rows x bank rows searched by the study
    run = StudyRun.of(cfg)
    expected = 0
    for c in run.categories:
        largest = run.model("patchcore", c, "shift", 0.10)
        for split in ("val", "test"):
            samples = run.samples(c, "shift", split)
            expected += len(samples) * 784 * len(largest.model.memory_bank_)
            for ratio in (0.01, 0.05):
                model = run.model("patchcore", c, "shift",
                                  ratio if ratio != cfg.get("patchcore.coreset_ratio") else None)
                alone = largest.model.with_ratio(ratio).score(run.store.batches(samples))[0]
                np.testing.assert_allclose(run.scores(model, c, "shift", split).scores, alone, rtol=1e-6)
    assert work == expected


@pytest.mark.slow
def test_two_runs_give_identical_metrics(first_run, tiny_data, tmp_path):
    _, results, _ = first_run
    again, _ = run_study(config(tmp_path / "again", tiny_data, scenarios=SHORT))
    assert metrics_only(again) == metrics_only(results[:2])


@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(first_run, tiny_data, tmp_path, monkeypatch):
    _, results, _ = first_run
    out = tmp_path / "killed"
    real_fit = PaDiM.fit

    def crash(self, features):
        raise KeyboardInterrupt("simulated kill in the middle of the run")

    monkeypatch.setattr(PaDiM, "fit", crash)
    with pytest.raises(KeyboardInterrupt):
        run_study(config(out, tiny_data, scenarios=SHORT))
    assert not list(out.rglob("*.tmp"))  # nothing half-written
    cached = len(list((out / "cache" / "features").rglob("*.pt")))
    assert cached == 2 * 19  # the clean images, extracted before the crash in the first scenario
    monkeypatch.setattr(PaDiM, "fit", real_fit)
    resumed, timings = run_study(config(out, tiny_data, scenarios=SHORT))
    # only what was never extracted: Val-shift + Test-shift (threshold-only needs no Train-shift)
    assert timings["features_computed"] == 2 * (2 + 1 + 4 + 4)
    assert metrics_only(resumed) == metrics_only(results[:2])


@pytest.mark.slow
def test_another_configuration_in_the_same_out_is_refused(first_run_copy, tiny_data):
    out = first_run_copy
    with pytest.raises(DatasetError, match=r"another configuration \(backbone: 'efficientnet_lite0' -> 'resnet18'"):
        run_study(RunConfig(out=out, data=str(tiny_data), backbone="resnet18", weights="random",
                            progress=False, scenarios=["clean"]))


@pytest.mark.slow
def test_cli_run_prints_summary_and_help(first_run_copy, tiny_data, capsys):
    out = first_run_copy
    code = main(["run", "--data", str(tiny_data), "--out", str(out), "--backbone", "efficientnet_lite0",
                 "--scenarios", "clean", "--methods", "padim", "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| clean | padim |" in text and "0 images through the backbone" in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    options = ("--data", "--categories", "--scenarios", "--methods", "--backbone", "--weights", "--device", "--out")
    for option in options:
        assert option in help_text


@pytest.mark.fast
def test_image_size_reaches_preprocessing_masks_and_maps(tiny_data, tmp_path):
    run = StudyRun.of(config(tmp_path / "small", tiny_data, scenarios=["clean"], methods=["padim"], image_size=64))
    scores = run.scores(run.model("padim", "brick", "clean"), "brick", "clean", "test")
    assert scores.maps.shape[1:] == scores.masks.shape[1:] == (64, 64)
    assert next(iter(run.store.batches(run.samples("brick", "clean", "train"))))["layer1"].shape[-1] == 16  # 64 / 4


@pytest.mark.slow
def test_caches_follow_the_code_that_made_them(tiny_data, tmp_path, monkeypatch, caplog):
    """Planted edits: a preprocessing change recomputes features, the shifted copy stays; a model
    change refits on cached features; a metrics change reuses everything; each says so in one line."""
    import experiments.execution.fingerprint as fp

    out = tmp_path / "code"
    cfg = config(out, tiny_data, scenarios=["clean", "shift_no_adaptation"], methods=["padim"])
    first, timings = run_study(cfg)
    n_images = 2 * 19 + 2 * 8  # clean images of 2 classes, and their shifted test images
    assert timings["features_computed"] == n_images
    real = fp.read_source

    def planted(edited: str):
        return lambda relpath: real(relpath) + (b"\n# planted edit\n" if relpath == edited else b"")

    def rerun(edited: str):
        monkeypatch.setattr(fp, "read_source", planted(edited))
        caplog.clear()
        with caplog.at_level("WARNING"):
            results, t = run_study(cfg)
        return metrics_only(results), t["features_computed"], caplog.text

    same, n, text = rerun("ad_core/metrics/pixel.py")  # on no cached artifact's path
    assert n == 0 and "recomputing" not in text and "refitting" not in text and same == metrics_only(first)
    same, n, text = rerun("ad_core/models/padim.py")
    assert n == 0 and "models and scores: refitting (code changed: ad_core/models/padim.py)" in text
    assert same == metrics_only(first)
    same, n, text = rerun("ad_core/data/preprocess.py")
    assert n == n_images and "features: recomputing (code changed: ad_core/data/preprocess.py)" in text
    assert "shifted copy of brick: recomputing (code changed: ad_core/data/preprocess.py)" in text
    assert text.count("refitting") == 1 and same == metrics_only(first)


@pytest.mark.slow
def test_seeds_share_features_and_report_spread_and_claims(first_run, tiny_data, tmp_path):
    out = tmp_path / "seeds"
    cfg = config(out, tiny_data, scenarios=["clean", "shift_no_adaptation"], methods=["patchcore", "padim"])
    summary, timings = run_seeds(cfg, [42, 7])
    # clean images of 2 classes (19 each), and the shifted test images (4 normal + 4 anomalous each)
    assert timings[42]["features_computed"] == 2 * 19 + 2 * 8
    assert timings[7]["features_computed"] == 2 * 8  # clean features come from the shared cache
    per_seed = [json.loads((out / f"seed-{s}" / "results" / "clean.json").read_text()) for s in (42, 7)]
    values = [r["methods"]["padim"]["mean"]["image_auroc"] for r in per_seed]
    spread = summary["metrics"]["clean"]["padim"]["mean"]["image_auroc"]
    assert spread["mean"] == pytest.approx(np.mean(values)) and spread["sd"] == pytest.approx(np.std(values, ddof=1))
    assert spread["n_seeds"] == 2 and spread["min"] == min(values)
    assert per_seed[0] != per_seed[1]  # splits, shift and models follow the seed
    claims = {c["claim"]: c for c in summary["claims"]}
    c = claims["PatchCore > PaDiM on clean image AUROC"]
    assert set(c["per_seed"]) == {"42", "7"}
    # the counts are the seeds' own claims.json verdicts and differences, counted again here
    own = {s: next(x for x in json.loads((out / f"seed-{s}" / "claims.json").read_text()) if x["claim"] == c["claim"])
           for s in (42, 7)}
    assert c["holds_in"] == sum(x["verdict"] == "holds" for x in own.values())
    assert c["positive_in"] == sum(x["difference"] > 0 for x in own.values())
    assert [c["per_seed"][str(s)]["difference"] for s in (42, 7)] == [own[s]["difference"] for s in (42, 7)]
    report = (out / "report.md").read_text()
    assert "PatchCore > PaDiM on clean image AUROC" in report and "± " in report
    ci = per_seed[0]["methods"]["padim"]["per_class"]["brick"]["ci95"]
    pc = per_seed[0]["methods"]["padim"]["per_class"]["brick"]
    for metric in ("image_auroc", "image_f1", "pixel_auroc", "pro"):
        assert ci[metric][0] <= ci[metric][1]
    assert ci["image_auroc"][0] <= pc["image_auroc"] <= ci["image_auroc"][1]


@pytest.mark.slow
def test_compare_passes_on_identical_runs_and_fails_with_a_table_on_a_planted_change(first_run, tmp_path, capsys):
    import shutil

    out, _, _ = first_run
    twin = tmp_path / "twin"
    shutil.copytree(out / "results", twin / "results")
    for name in ("checksums.json", "provenance.json"):
        shutil.copy(out / name, twin / name)
    assert main(["compare", str(out), str(twin)]) == 0
    clean = json.loads((twin / "results" / "clean.json").read_text())
    clean["methods"]["padim"]["per_class"]["brick"]["image_auroc"] -= 0.2  # planted
    clean["methods"]["padim"]["per_class"]["brick"]["pro"] += 1e-9  # below any tolerance
    (twin / "results" / "clean.json").write_text(json.dumps(clean))
    seal_results(twin)  # as a run that produced the planted numbers records them
    capsys.readouterr()
    assert main(["compare", str(out), str(twin)]) == 1
    text = capsys.readouterr().out
    assert "| clean | padim | brick | image_auroc |" in text and "| NO |" in text
    assert "| clean | padim | brick | pro |" not in text and "2 number(s) differ, 1 beyond tolerance" in text
    assert main(["compare", str(out), str(twin), "--all"]) == 1
    assert "| clean | padim | brick | pro |" in capsys.readouterr().out  # within tolerance: tabled with --all
    assert main(["compare", str(out), str(twin), "--tolerance", "0.5"]) == 0
    (twin / "results" / "unified.json").unlink()
    seal_results(twin)
    assert main(["compare", str(out), str(twin)]) == 2
    assert "hold different scenarios: only in A ['unified']" in capsys.readouterr().err
    assert main(["compare", str(out), str(tmp_path / "missing")]) == 2


@pytest.mark.fast
def test_overlays_show_each_defect_type_before_a_second_image_of_one():
    from experiments.evaluation.results import ScoreSet
    from experiments.reporting.plots import overlay_picks

    relpaths = ["test/good/0.png", "test/crack/0.png", "test/crack/1.png", "test/crack/2.png", "test/dent/0.png"]
    s = ScoreSet(relpaths, np.array([0, 1, 1, 1, 1]), np.array([9.0, 1.0, 5.0, 3.0, 2.0]))
    defects = [r.split("/")[1] for r in relpaths]
    assert overlay_picks(s, defects, 2) == [2, 4]  # crack's best, then dent's: not two cracks
    assert overlay_picks(s, defects, 4) == [2, 4, 3, 1]
    assert overlay_picks(s, defects, 9) == [2, 4, 3, 1]  # never a normal image
