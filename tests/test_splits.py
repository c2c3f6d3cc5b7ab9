"""Seeded splits (docs/protocol.md §2): counts, determinism, JSON round trip, real MVTec counts."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ad_core.data.layouts.mvtec import discover_category
from ad_core.data.splits import make_splits, save_splits, split_sizes
from ad_core.errors import DatasetError
from experiments.readers import FileFormatError, read_splits

pytestmark = pytest.mark.fast

# docs/protocol.md §2 Table 1 (official MVTec AD): (n train/good, n test/good, n anomalous) -> counts
STUDY_COUNTS = {
    "hazelnut": ((391, 40, 70), dict(train=312, val_normal=79, val_anomalous=21, test_normal=40, test_anomalous=49)),
    "carpet": ((280, 28, 89), dict(train=224, val_normal=56, val_anomalous=26, test_normal=28, test_anomalous=63)),
    "zipper": ((240, 32, 119), dict(train=192, val_normal=48, val_anomalous=35, test_normal=32, test_anomalous=84)),
}


@pytest.mark.parametrize("category", sorted(STUDY_COUNTS))
def test_study_counts_on_folders_of_mvtec_sizes(make_category, category):
    (n_train, n_good, n_anom), expected = STUDY_COUNTS[category]
    defects = {"a": n_anom // 2, "b": n_anom - n_anom // 2}
    cat = make_category(name=category, n_train=n_train, n_test_good=n_good, defects=defects, empty_files=True)
    splits = make_splits(discover_category(cat.parent, category))
    assert splits.counts() == expected
    assert splits.seed == 42


@pytest.mark.mvtec
@pytest.mark.parametrize("category", sorted(STUDY_COUNTS))
def test_study_counts_on_real_mvtec(mvtec_root, category):
    splits = make_splits(discover_category(mvtec_root, category))
    assert splits.counts() == STUDY_COUNTS[category][1]


@given(n_good=st.integers(2, 500), n_anom=st.integers(4, 300))
def test_sizes_follow_the_rule_and_partition(n_good, n_anom):
    s = split_sizes(n_good, n_anom)
    assert s["train"] == int(0.8 * n_good) and s["train"] + s["val_normal"] == n_good
    assert s["val_anomalous"] == int(0.3 * n_anom) and s["val_anomalous"] + s["test_anomalous"] == n_anom


def test_splits_partition_the_files_and_are_seeded(make_category):
    cat = make_category(n_train=20, n_test_good=4, defects={"crack": 6, "dent": 7})
    files = discover_category(cat.parent, cat.name)
    a, b, c = make_splits(files), make_splits(files), make_splits(files, seed=7)
    assert a == b
    assert a.train != c.train or a.val_anomalous != c.val_anomalous
    assert sorted(a.train + a.val_normal) == [s.relpath for s in files.train_good]
    assert sorted(a.val_anomalous + a.test_anomalous) == sorted(s.relpath for s in files.test_anomalous)
    assert not set(a.train) & set(a.val_normal)
    assert a.test_normal == [s.relpath for s in files.test_good]
    # the shuffle is over both defect types together: val anomalies come from both
    assert {p.split("/")[1] for p in a.val_anomalous + a.test_anomalous} == {"crack", "dent"}


def test_json_round_trip_lists_file_names(make_category, tmp_path):
    cat = make_category(n_train=10, defects={"crack": 5})
    files = discover_category(cat.parent, cat.name)
    splits = make_splits(files)
    save_splits(splits, tmp_path / "s.json")
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload["train"][0].startswith("train/good/") and payload["counts"]["train"] == 8
    loaded = read_splits(tmp_path / "s.json")
    assert loaded == splits
    assert [s.relpath for s in loaded.samples(files, loaded.test())] == loaded.test()


def test_stale_splits_name_the_missing_file(make_category, tmp_path):
    cat = make_category(n_train=10, defects={"crack": 5})
    files = discover_category(cat.parent, cat.name)
    splits = make_splits(files)
    gone = splits.train[0]
    (cat / gone).unlink()
    with pytest.raises(DatasetError, match=f"first: {gone}.*delete the splits file"):
        splits.samples(discover_category(cat.parent, cat.name), splits.train)


GOOD = {"format": "ad-repro-splits/1", "category": "c", "seed": 42, "train": ["train/good/a.png"],
        "val_normal": [], "val_anomalous": [], "test_normal": [], "test_anomalous": []}
BAD_SPLITS = [("{not json", "is not complete JSON"), (json.dumps({"format": "other"}), "not an ad-repro splits file"),
              (json.dumps({"format": "ad-repro-splits/1"}), "field category is missing"),
              (json.dumps({**GOOD, "seed": "42"}), "field seed input should be a valid integer"),
              (json.dumps({**GOOD, "train": ["../../etc/passwd"]}), "not a path inside the category"),
              (json.dumps({**GOOD, "extra": 1}), "field extra is not a known field")]


@pytest.mark.parametrize("content,why", BAD_SPLITS)
def test_bad_splits_file(tmp_path, content, why):
    (tmp_path / "s.json").write_text(content)
    with pytest.raises(FileFormatError, match="s.json: .*" + re.escape(why)):
        read_splits(tmp_path / "s.json")


def test_too_few_images_for_a_split(make_category):
    cat = make_category(n_train=1)
    with pytest.raises(DatasetError, match="needs at least 2"):
        make_splits(discover_category(cat.parent, cat.name))
    cat2 = make_category(name="other", defects={"crack": 3})
    few = make_splits(discover_category(cat2.parent, "other"))  # none to calibrate on: the normal-only rule
    assert few.val_anomalous == [] and len(few.test_anomalous) == 3
    none = make_category(name="none", defects={})
    assert make_splits(discover_category(none.parent, "none")).test_anomalous == []
