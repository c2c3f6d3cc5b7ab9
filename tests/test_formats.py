"""Each file format is declared once: the type that writes a file is the schema that reads it.

Per format: what the writer writes reads back through the reader as the same value, its keys are
the schema's fields in their declared order (so a field added to the type is written and read
without touching another file), and a file read and written again keeps its bytes -- the repo's
golden files and drift records, written by the code before this one, included.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ad_core.data.io import write_json
from ad_core.data.layouts.mvtec import discover_category
from ad_core.data.splits import Splits, SplitsHeader, make_splits, save_splits
from experiments.evaluation.results import ClassResult, MethodResult, ScenarioResult
from experiments.gates.goldens import derive_tolerances, max_drift, payload
from experiments.readers import (
    FileFormatError,
    read_checksums,
    read_drift,
    read_golden,
    read_guard,
    read_provenance,
    read_splits,
)
from experiments.readers.golden import DriftFile, GoldenFile, Tolerance
from experiments.readers.run_folder import Checksums, ProvenanceFile
from experiments.records import provenance
from experiments.records.artifacts import CHECKSUMS, GUARD, check_guard, write_guard
from tests.test_goldens import result

pytestmark = pytest.mark.fast
GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def text(value: object) -> str:
    """A JSON object as ``ad_core.data.io.write_json`` writes it."""
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


def in_field_order(keys: list[str], schema: type) -> bool:
    """Whether ``keys`` are fields of ``schema``, in the order it declares them."""
    fields = list(schema.model_fields)
    return all(k in fields for k in keys) and keys == sorted(keys, key=fields.index)


# -- splits files ---------------------------------------------------------------------------------
def splits_variants(files) -> list[Splits]:
    study = make_splits(files)
    return [study, make_splits(files, protocol="full_test"),
            study.model_copy(update={"source": "validation/good"}),
            study.model_copy(update={"source": "split_csv/1cls.csv"}),
            study.model_copy(update={"holdout": "every tenth normal image is a test normal"})]


def test_a_splits_file_reads_back_as_the_splits_written(make_category, tmp_path):
    cat = make_category(n_train=10, defects={"crack": 5})
    for splits in splits_variants(discover_category(cat.parent, cat.name)):
        path = tmp_path / "s.json"
        save_splits(splits, path)
        written = json.loads(path.read_text())
        head = list(SplitsHeader.model_fields)
        assert list(written)[:3] == head and in_field_order(list(written)[3:], Splits)
        assert ("source" in written) == (splits.source is not None)  # left out where None, as before
        assert ("holdout" in written) == (splits.holdout is not None)
        assert (splits.holdout or "") in written["rule"]  # the rule in words states the reader's hold-out
        assert read_splits(path) == splits
        assert text(read_splits(path).to_json()) == path.read_text()


def test_the_writer_refuses_what_the_reader_would():
    with pytest.raises(ValueError, match="not a path inside the category"):
        Splits(category="c", seed=1, train=["../x"], val_normal=[], val_anomalous=[], test_normal=[],
               test_anomalous=[])


def test_a_splits_file_field_added_to_the_type_is_written_and_read(tmp_path):
    class Wider(Splits):  # a new field: declared once, on the type
        note: str = "new"

    wide = Wider(category="c", seed=1, train=["train/good/a.png"], val_normal=[], val_anomalous=[],
                 test_normal=[], test_anomalous=[], note="kept")
    write_json(tmp_path / "s.json", wide.to_json())
    value = json.loads((tmp_path / "s.json").read_text())
    assert value["note"] == "kept" and Wider.from_json(tmp_path / "s.json", value, "fix") == wide
    with pytest.raises(FileFormatError, match="field note is not a known field"):  # the old type names it
        read_splits(tmp_path / "s.json")


# -- provenance.json, run_config.json, checksums.json ---------------------------------------------
def fake_run(tmp_path: Path, bit_depth: int | None, holdout: str | None = None) -> SimpleNamespace:
    clean = SimpleNamespace(all_samples=lambda: [], bit_depth=bit_depth,
                            bit_depth_exceptions={"test/x.png": "8-bit"} if bit_depth else {})
    splits = SimpleNamespace(holdout=holdout)
    return SimpleNamespace(prepared={"brick": SimpleNamespace(clean=clean, splits=splits)}, device="cpu",
                           knn_backend="faiss", root=tmp_path, layout="mvtec")


@pytest.mark.parametrize("bit_depth,holdout", [(None, None), (12, "every tenth normal is a test normal")])
def test_provenance_is_written_as_the_schema_that_reads_it(tmp_path, bit_depth, holdout, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ad-repro", "run"])
    record = provenance.collect(fake_run(tmp_path, bit_depth, holdout), 2, "local", 1)
    keys = list(record)
    assert in_field_order(keys, ProvenanceFile)
    assert keys == [k for k in ProvenanceFile.model_fields if (bit_depth or not k.startswith("image_bit_depth_"))
                    and (holdout or k != "split_holdout")]
    assert record.get("split_holdout") == ({"brick": holdout} if holdout else None)
    write_json(tmp_path / "provenance.json", record)
    assert read_provenance(tmp_path / "provenance.json") == record
    again = ProvenanceFile.model_validate(record, strict=True).to_json()
    assert text(again) == (tmp_path / "provenance.json").read_text()


def test_an_older_provenance_record_still_reads(tmp_path):
    (tmp_path / "provenance.json").write_text(json.dumps({"format": 1, "data_digest": "0" * 64,
                                                          "image_bit_depth_exceptions": {}}))
    assert read_provenance(tmp_path / "provenance.json")["data_digest"] == "0" * 64


def test_the_guard_and_the_checksums_read_back_as_written(tmp_path):
    fingerprint = {"seed": 42, "categories": ["brick"], "weights": None}
    assert check_guard(tmp_path, fingerprint)
    write_guard(tmp_path, fingerprint)
    assert read_guard(tmp_path / GUARD) == fingerprint and not check_guard(tmp_path, fingerprint)
    book = {"results/clean.json": "a" * 64}
    write_json(tmp_path / CHECKSUMS, Checksums(book).model_dump())
    assert read_checksums(tmp_path / CHECKSUMS) == book


# -- golden files and drift.json ------------------------------------------------------------------
@pytest.mark.parametrize("verdict", [None, {"preset": "p", "status": "pass", "summary": "s", "extra": 1}])
def test_a_golden_is_written_as_the_schema_that_reads_it(tmp_path, verdict):
    r = result()  # its memory-bank tolerance is the integer 0: written "abs": 0, never 0.0
    record = payload(r, "embedded", "efficientnet_lite0", derive_tolerances(r, {}), verdict)
    assert in_field_order(list(record), GoldenFile) and ("recorded_with_verdict" in record) == bool(verdict)
    assert all(in_field_order(list(t), Tolerance) for t in record["tolerances"].values())
    assert record["tolerances"]["memory_bank_size"]["abs"] == 0 and '"abs": 0,' in text(record)
    write_json(tmp_path / "clean.json", record)
    golden = read_golden(tmp_path / "clean.json")
    assert golden.to_json() == record and text(golden.to_json()) == (tmp_path / "clean.json").read_text()


@pytest.mark.parametrize("path", sorted(p for p in GOLDEN.glob("*/*.json") if p.name != "config.json"),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_repo_s_golden_files_keep_their_bytes_through_the_schema(path):
    written = path.read_text()
    if path.name == "drift.json":
        again = DriftFile.model_validate(read_drift(path), strict=True).to_json()
    else:
        again = read_golden(path).to_json()
        if "format" not in json.loads(written):  # recorded before the field existed: format 1
            assert again.pop("format") == 1
    assert text(again) == written


def test_a_drift_record_is_written_as_the_schema_that_reads_it(tmp_path):
    a = result(auroc=0.9)
    b = ScenarioResult(a.scenario, a.description, a.config, [MethodResult(
        "patchcore", None, {c: ClassResult(**{**pc.__dict__, "memory_bank_size": 120})
                            for c, pc in a.methods[0].per_class.items()},
        a.methods[0].thresholds, pooled=a.methods[0].pooled, shortcut=a.methods[0].shortcut)])
    record = DriftFile(how="a test", **max_drift([a], [b])).to_json()
    assert list(record) == ["how", "max_abs", "max_rel", "by_scenario"]
    assert record["max_abs"]["memory_bank_size"] == 3  # an integer drift stays one
    write_json(tmp_path / "drift.json", record)
    assert read_drift(tmp_path / "drift.json") == record
    no_scenarios = DriftFile(how="x").to_json()
    assert "by_scenario" not in no_scenarios
