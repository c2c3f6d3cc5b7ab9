"""PatchCore (docs/protocol.md §5): embedding, coreset, kNN, reweighting, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ad_core.models import PatchCore
from ad_core.models.kernels.coreset import greedy_coreset, jl_matrix
from ad_core.models.kernels.knn import NearestNeighbours
from ad_core.models.patchcore import original_embedding, patch_embedding, reweight_study

pytestmark = pytest.mark.fast


def feature_batches(n_batches=3, b=4, c2=32, c3=64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [{"layer2": torch.randn(b, c2, 28, 28, generator=g) * scale,
             "layer3": torch.randn(b, c3, 14, 14, generator=g) * scale} for _ in range(n_batches)]


def all_patches(batches):
    return torch.cat([patch_embedding(b, ("layer2", "layer3")).permute(0, 2, 3, 1).reshape(-1, 96) for b in batches])


def test_embedding_is_1536_d_on_a_28x28_grid_for_resnet50_layers():
    feats = {"layer2": torch.randn(2, 512, 28, 28), "layer3": torch.randn(2, 1024, 14, 14)}
    emb = patch_embedding(feats, ("layer2", "layer3"))
    assert emb.shape == (2, 1536, 28, 28)
    # layer2 part: 3x3 mean with zero padding (count_include_pad), away from the border
    assert torch.allclose(emb[0, 0, 5, 5], feats["layer2"][0, 0, 4:7, 4:7].mean(), atol=1e-6)


def test_original_embedding_is_the_authors_aggregation_by_its_definition():
    """Position by position: the zero-padded 3x3 neighbourhood of each layer (channel-major), layer3's
    resized bilinearly to layer2's grid, each adaptive-averaged to ``dim``, concatenated, averaged to ``dim``."""
    g = torch.Generator().manual_seed(0)
    feats = {"layer2": torch.rand(2, 5, 6, 6, generator=g), "layer3": torch.rand(2, 7, 3, 3, generator=g)}
    dim = 8
    out = original_embedding(feats, ("layer2", "layer3"), dim)
    assert out.shape == (2, dim, 6, 6)

    def adaptive_mean(v: torch.Tensor, n: int) -> torch.Tensor:  # windows [floor(iL/n), ceil((i+1)L/n))
        length = len(v)
        return torch.stack([v[(i * length) // n: -((-(i + 1) * length) // n)].mean() for i in range(n)])

    def neighbourhoods(x: torch.Tensor) -> torch.Tensor:  # (B, C*9, h, w), one block per position
        b, c, h, w = x.shape
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        return torch.stack([torch.stack([padded[:, :, i:i + 3, j:j + 3].reshape(b, c * 9) for j in range(w)], -1)
                            for i in range(h)], -2)

    n2 = neighbourhoods(feats["layer2"])
    n3 = torch.nn.functional.interpolate(neighbourhoods(feats["layer3"]), size=(6, 6), mode="bilinear",
                                         align_corners=False)
    for b in range(2):
        for i in range(6):
            for j in range(6):
                merged = torch.cat([adaptive_mean(n2[b, :, i, j], dim), adaptive_mean(n3[b, :, i, j], dim)])
                assert torch.allclose(out[b, :, i, j], adaptive_mean(merged, dim), atol=1e-6), (b, i, j)


def test_original_embedding_option_fits_and_scores_on_1024_d_patches():
    batches = feature_batches(n_batches=2, b=2, c2=512, c3=1024)
    model = PatchCore(coreset_ratio=0.05, embedding="original", reweighting="paper", blur_sigma=4.0).fit(batches)
    assert model.memory_bank_.shape == (int(0.05 * 4 * 784), 1024)
    scores, maps = model.score(batches[:1])
    assert scores.shape == (2,) and maps.shape == (2, 224, 224) and np.isfinite(maps).all()
    with pytest.raises(ValueError, match="embedding must be one of"):
        PatchCore(embedding="other").fit(batches)



def test_fit_bank_size_rows_and_determinism():
    batches = feature_batches()
    model = PatchCore(coreset_ratio=0.05).fit(batches)
    n = 3 * 4 * 784
    assert model.n_train_patches_ == n
    assert model.memory_bank_.shape == (int(0.05 * n), 96)
    patches = all_patches(batches).numpy()
    d, _ = NearestNeighbours(patches).search(model.memory_bank_, 1)
    assert np.allclose(d, 0, atol=1e-3)  # every bank row is a training patch
    again = PatchCore(coreset_ratio=0.05).fit(batches)
    assert np.array_equal(model.memory_bank_, again.memory_bank_)
    other = PatchCore(coreset_ratio=0.05, seed=7).fit(batches)
    assert not np.array_equal(model.memory_bank_, other.memory_bank_)


@pytest.mark.parametrize("embedding", ["study", "original"])
def test_a_smaller_ratio_is_a_prefix_of_the_bank(embedding):
    """The greedy coreset is prefix-consistent: a model at 1% or 5% taken from one fit at 10% equals a fresh fit."""
    batches = feature_batches(n_batches=2, b=3, c2=32 if embedding == "study" else 64,
                              c3=64 if embedding == "study" else 128)
    big = PatchCore(coreset_ratio=0.10, embedding=embedding).fit(batches)
    for ratio in (0.05, 0.01):
        fresh = PatchCore(coreset_ratio=ratio, embedding=embedding).fit(batches)
        derived = big.with_ratio(ratio)
        np.testing.assert_array_equal(derived.memory_bank_, fresh.memory_bank_)
        assert derived.get_params() == fresh.get_params() and derived.fit_summary() == fresh.fit_summary()
        np.testing.assert_array_equal(derived.score(batches[0])[0], fresh.score(batches[0])[0])
    with pytest.raises(ValueError, match="ratio <= the fitted one"):
        big.with_ratio(0.2)


@pytest.mark.parametrize("reweighting", ["study", "paper", "none"])
def test_nested_scores_equal_each_prefix_model_scored_alone(reweighting):
    # the ablation scores the 1/5/10% banks of one greedy run with one search over the 10% bank
    batches = feature_batches(n_batches=2, b=3)
    big = PatchCore(coreset_ratio=0.10, reweighting=reweighting, blur_sigma=4.0).fit(batches)
    ratios = [0.01, 0.10, 0.05, 0.01]  # any order, repeats allowed
    for ratio, (image, maps) in zip(ratios, big.score_nested(batches, ratios)):
        alone_image, alone_maps = big.with_ratio(ratio).score(batches)
        np.testing.assert_allclose(image, alone_image, rtol=1e-6)
        np.testing.assert_allclose(maps, alone_maps, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ratio <= the fitted one"):
        big.score_nested(batches, [0.2])



def test_bank_is_the_coreset_of_the_projection_in_greedy_order():
    batches = feature_batches(n_batches=2, b=2)
    model = PatchCore(coreset_ratio=0.02, seed=3).fit(batches)
    patches = all_patches(batches)
    proj = patches @ jl_matrix(96, 128, 3)
    from ad_core.models.kernels.coreset import start_index

    idx = greedy_coreset(proj, int(0.02 * len(patches)), start_index(len(patches), 3))
    assert np.array_equal(model.memory_bank_, patches[idx].numpy())


def test_training_patches_score_zero_with_the_full_bank():
    batches = feature_batches(n_batches=1, b=2)
    model = PatchCore(coreset_ratio=1.0, reweighting="none").fit(batches)
    scores, maps = model.score(batches[0])
    # the faiss backend forms |x|^2 + |y|^2 - 2xy in float32 (the sqrt turns its ~1e-5 error at 0 into
    # ~3e-3); the exact backend's float64 sums give exactly 0
    assert np.allclose(scores, 0, atol=1e-2) and maps.shape == (2, 224, 224)
    new = feature_batches(n_batches=1, b=2, seed=5)[0]
    assert (model.score(new)[0] > 1.0).all()



@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 9)),
                  elements=st.floats(0, 1e6, allow_subnormal=False)))
def test_study_reweighting_is_finite_bounded_and_matches_the_formula(raw):
    d = np.sort(raw, axis=1)
    s = reweight_study(d)
    k = d.shape[1]
    assert np.isfinite(s).all()
    assert (s >= -1e-9).all() and (s <= d[:, 0] * (1 - 1 / k) + 1e-6 * (1 + d[:, 0])).all()
    moderate = d[:, -1] - d[:, 0] < 50  # where exp(-d) is representable, the literal formula
    if moderate.any():
        dm = d[moderate] - d[moderate][:, :1] + 1.0  # same weights (shift-invariant), exp stays in range
        literal = 1 - np.exp(-dm[:, 0]) / np.exp(-dm).sum(axis=1)
        assert np.allclose(s[moderate], d[moderate][:, 0] * literal, rtol=1e-9, atol=1e-12)


def test_reweighting_underflow_case_gives_no_nan():
    d = np.array([[2000.0, 2000.5, 2001.0]])  # exp(-2000) == 0 in float64: 0/0 if done naively
    assert np.isfinite(reweight_study(d)).all() and reweight_study(d)[0] > 0


def test_study_and_paper_reweighting_differ_as_documented():
    batches = feature_batches()
    test = feature_batches(n_batches=1, b=3, seed=9, scale=1.3)[0]
    model = PatchCore().fit(batches)
    model.reweighting = "none"
    raw_scores, raw_maps = model.score(test)
    model.reweighting = "paper"
    paper_scores, paper_maps = model.score(test)
    model.reweighting = "study"
    study_scores, study_maps = model.score(test)
    assert np.array_equal(paper_maps, raw_maps)  # paper: the map keeps d1
    assert not np.allclose(study_maps, raw_maps)  # study: every patch reweighted
    assert (study_maps <= raw_maps + 1e-5).all()  # w < 1 per patch
    assert not np.allclose(paper_scores, study_scores)
    assert (paper_scores <= raw_scores + 1e-9).all()


def test_save_load_round_trip(tmp_path):
    batches = feature_batches()
    model = PatchCore(k=5, blur_sigma=4.0).fit(batches)
    model.save(tmp_path / "pc.npy")
    loaded = PatchCore.load(tmp_path / "pc.npy")
    assert loaded.get_params() == model.get_params()
    s1, m1 = model.score(batches[0])
    s2, m2 = loaded.score(batches[0])
    assert np.array_equal(s1, s2) and np.array_equal(m1, m2)
    assert np.array_equal(np.load(tmp_path / "pc.npy"), model.memory_bank_)


def test_usage_errors():
    with pytest.raises(TypeError, match="twice"):
        PatchCore().fit(b for b in feature_batches())
    with pytest.raises(RuntimeError, match="not fitted"):
        PatchCore().score(feature_batches(1)[0])
    with pytest.raises(ValueError, match="coreset_ratio"):
        PatchCore(coreset_ratio=0).fit(feature_batches(1))
    with pytest.raises(ValueError, match="reweighting"):
        PatchCore(reweighting="other").fit(feature_batches(1))
    with pytest.raises(ValueError, match="k=1 makes every weight"):
        PatchCore(k=1).fit(feature_batches(1))


class CountedBatches:
    """Re-iterable batches that say how many images they hold (as the feature cache's do)."""

    def __init__(self, batches, n_images):
        self.batches, self.n_images = batches, n_images

    def __iter__(self):
        return iter(self.batches)


def test_fit_writes_the_projection_in_place_to_the_same_bank_and_refuses_a_wrong_count():
    batches = feature_batches(n_batches=3, b=4)
    from_list = PatchCore(coreset_ratio=0.1).fit(batches)
    in_place = PatchCore(coreset_ratio=0.1).fit(CountedBatches(batches, 12))
    np.testing.assert_array_equal(in_place.memory_bank_, from_list.memory_bank_)
    assert in_place.n_train_patches_ == from_list.n_train_patches_
    for wrong in (11, 13):
        with pytest.raises(RuntimeError, match="feature batches held"):
            PatchCore(coreset_ratio=0.1).fit(CountedBatches(batches, wrong))
