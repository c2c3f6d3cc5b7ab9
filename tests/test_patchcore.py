"""PatchCore (docs/protocol.md §5): embedding, coreset, kNN, reweighting, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ad_core.models import PatchCore
from ad_core.models.coreset import greedy_coreset, greedy_coreset_dense, jl_matrix
from ad_core.models.kcenter_cpu import BatchedKCenter
from ad_core.models.knn import NearestNeighbours, NestedNeighbours
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


def brute_force_greedy(x: np.ndarray, size: int, start: int) -> list[int]:
    chosen = [start]
    d = np.linalg.norm(x - x[start], axis=1)
    while len(chosen) < size:
        nxt = int(np.argmax(d))
        chosen.append(nxt)
        d = np.minimum(d, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(5, 200), st.integers(1, 30), st.integers(1, 64))
def test_dense_greedy_coreset_equals_brute_force(seed, n, size, chunk):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    size = min(size, n)
    start = int(rng.integers(n))
    got = greedy_coreset_dense(torch.from_numpy(x), size, start, chunk=chunk).tolist()
    assert got == brute_force_greedy(x.astype(np.float64), size, start)
    assert len(set(got)) == size


def clustered(rng: np.random.Generator, n: int, d: int, n_modes: int, spread: float, offset: float) -> np.ndarray:
    """Points around a few modes (the next centres are mostly the current furthest points), shifted by ``offset``."""
    modes = rng.normal(size=(n_modes, d)) * 10
    return (offset + modes[rng.integers(n_modes, size=n)] + spread * rng.normal(size=(n, d))).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 300), st.sampled_from([1, 3, 8, 40]), st.integers(1, 6),
       st.sampled_from([0.01, 0.3, 3.0]), st.sampled_from([0.0, 1000.0]), st.floats(0.01, 1.0))
def test_cpu_greedy_coreset_equals_brute_force(seed, n, d, n_modes, spread, offset, fraction):
    # offset 1000: norms >> distances, where float32 rounding of the product and its band matter most
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, d, n_modes, spread, offset)
    size = max(1, int(fraction * n))
    start = int(rng.integers(n))
    got = greedy_coreset(torch.from_numpy(x), size, start).tolist()
    assert got == brute_force_greedy(x.astype(np.float64), size, start)


def test_cpu_greedy_coreset_at_128_dims_beyond_one_pool():
    # more points than the default pool (4,096): every batch ends at the pool's cutoff
    rng = np.random.default_rng(1)
    x = clustered(rng, 6000, 128, 12, 0.5, 0.0)
    got = greedy_coreset(torch.from_numpy(x), 600, 17).tolist()
    assert got == brute_force_greedy(x.astype(np.float64), 600, 17)
    assert got == greedy_coreset_dense(torch.from_numpy(x), 600, 17).tolist()


def test_cpu_greedy_coreset_every_point_and_duplicates():
    # size == n: duplicated rows give zero distances, the last steps tie at zero and take
    # the lowest index
    rng = np.random.default_rng(2)
    base = clustered(rng, 150, 5, 3, 0.2, 0.0)
    x = np.concatenate([base, base[:40]])
    got = greedy_coreset(torch.from_numpy(x), len(x), 3).tolist()
    assert got == brute_force_greedy(x.astype(np.float64), len(x), 3)


def test_unstructured_data_keeps_the_greedy_order():
    # i.i.d. noise in 128 dims: the next centres are rarely the current furthest points, so
    # batches stay short; the result must not depend on it
    x = np.random.default_rng(3).normal(size=(5000, 128)).astype(np.float32)
    got = greedy_coreset(torch.from_numpy(x), 120, 5).tolist()
    assert got == brute_force_greedy(x.astype(np.float64), 120, 5)


def run_batched(x: np.ndarray, size: int, start: int, pool_size: int, max_batch: int,
                product: str = "auto") -> list[int]:
    state = BatchedKCenter(x, size, start, pool_size=pool_size, max_batch=max_batch, product=product)
    while state.done < size:
        state.advance()
    return state.selected.tolist()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 400), st.sampled_from([2, 8, 40]), st.integers(1, 5),
       st.sampled_from([1, 2, 5, 64]), st.sampled_from([1, 2, 7, 100]), st.booleans(), st.floats(0.05, 1.0),
       st.sampled_from(["float32", "bfloat16"]))
def test_small_pools_and_batches_keep_the_greedy_order(seed, n, d, n_modes, pool_size, max_batch, duplicated,
                                                       fraction, product):
    # pools of 1-64 points and batches of 1-100 steps end batches at the cutoff all the time;
    # duplicated rows make the pool's best tie with points outside it (the plain-rule step)
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, d, n_modes, 0.3, 0.0)
    if duplicated:
        x = np.concatenate([x, x[rng.integers(n, size=n)]])
    size = max(1, int(fraction * len(x)))
    start = int(rng.integers(len(x)))
    expected = brute_force_greedy(x.astype(np.float64), size, start)
    assert run_batched(x, size, start, pool_size, max_batch, product) == expected


def test_ties_at_zero_follow_the_first_index_rule():
    # three distinct rows, each repeated: after three steps every distance is 0 and the rule
    # keeps taking the first index, also when the pool is smaller than the tied set
    x = np.repeat(np.eye(3, 4, dtype=np.float32), 5, axis=0)
    expected = brute_force_greedy(x.astype(np.float64), 9, 7)
    assert expected[:3] == [7, 0, 10] and expected[3:] == [0] * 6
    for pool_size, max_batch in ((1, 1), (2, 3), (64, 100)):
        for product in ("float32", "bfloat16"):
            assert run_batched(x, 9, 7, pool_size, max_batch, product) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1.0, 1e3, 1e5]), st.sampled_from([2, 16, 128, 1024]),
       st.sampled_from(["float32", "bfloat16"]))
def test_product_distances_stay_within_the_band(seed, scale, d, product):
    # the update skips a pair when the float32 product's distance minus the band is >= m(x):
    # safe only if |approximate - exact| <= kappa (|x'| + |c'|)^2, on data whose norms dwarf
    # its distances (offset ``scale``, spreads down to 1e-4) and whose mean is not the offset
    rng = np.random.default_rng(seed)
    spread = rng.choice([1e-4, 1e-2, 1.0])
    x = (scale * rng.uniform(0.5, 1.5, size=d) + rng.normal(size=(400, d)) * spread).astype(np.float32)
    state = BatchedKCenter(x, 1, 0, product=product)
    a, b = rng.integers(400, size=(2, 80))
    gram = state.gram(a, b).astype(np.float64)  # the update's product
    approx = state.sq[a][:, None] + state.sq[b][None, :] - 2.0 * gram
    x64 = x.astype(np.float64)
    exact = ((x64[a][:, None, :] - x64[b][None, :, :]) ** 2).sum(2)
    band = state.kappa * (state.norm[a][:, None] + state.norm[b][None, :]) ** 2
    assert (np.abs(approx - exact) <= band).all()
    # not vacuous: the band stays a small fraction of the distances
    assert state.kappa < (1e-4 if d <= 128 else 1e-3) if product == "float32" else state.kappa < 0.03


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


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 60), st.integers(1, 12), st.booleans())
def test_nested_neighbours_are_each_prefix_searched_alone(seed, m, k, duplicated):
    rng = np.random.default_rng(seed)
    bank = rng.normal(size=(m, 6)).astype(np.float32)
    if duplicated:  # equal distances across segments: the lower bank index first
        bank[m // 2:] = bank[: m - m // 2]
    queries = np.concatenate([rng.normal(size=(30, 6)).astype(np.float32), bank[:5]])
    sizes = sorted(set(rng.integers(1, m + 1, size=3).tolist()))
    got = NestedNeighbours(bank, sizes).search(queries, k)
    assert sorted(got) == sizes
    for size in sizes:
        d, idx = got[size]
        assert d.shape == idx.shape == (len(queries), min(k, size)) and (idx < size).all()
        exact = np.linalg.norm(queries[:, None, :].astype(np.float64) - bank[None, :size], axis=2)
        np.testing.assert_allclose(d, np.sort(exact, axis=1)[:, :min(k, size)], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.take_along_axis(exact, idx, 1), d, rtol=1e-5, atol=1e-5)


def test_bank_is_the_coreset_of_the_projection_in_greedy_order():
    batches = feature_batches(n_batches=2, b=2)
    model = PatchCore(coreset_ratio=0.02, seed=3).fit(batches)
    patches = all_patches(batches)
    proj = patches @ jl_matrix(96, 128, 3)
    from ad_core.models.coreset import start_index

    idx = greedy_coreset(proj, int(0.02 * len(patches)), start_index(len(patches), 3))
    assert np.array_equal(model.memory_bank_, patches[idx].numpy())


def test_training_patches_score_zero_with_the_full_bank():
    batches = feature_batches(n_batches=1, b=2)
    model = PatchCore(coreset_ratio=1.0, reweighting="none").fit(batches)
    scores, maps = model.score(batches[0])
    # the faiss backend forms |x|^2 + |y|^2 - 2xy in float32 (the sqrt turns its ~1e-5 error at 0 into
    # ~3e-3); the bfloat16 backend's float64 sums give exactly 0
    assert np.allclose(scores, 0, atol=1e-2) and maps.shape == (2, 224, 224)
    new = feature_batches(n_batches=1, b=2, seed=5)[0]
    assert (model.score(new)[0] > 1.0).all()


@pytest.mark.parametrize("backend", ["bfloat16", "faiss", "torch"])
def test_knn_distances_equal_brute_force(backend):
    """The CPU backends (bfloat16 filter, faiss) and torch (CUDA without a faiss GPU index)."""
    rng = np.random.default_rng(0)
    bank, q = rng.normal(size=(300, 20)).astype(np.float32), rng.normal(size=(50, 20)).astype(np.float32)
    knn = NearestNeighbours(bank, backend=backend)
    assert knn.backend == backend
    d, idx = knn.search(q, 9)
    full = np.linalg.norm(q[:, None] - bank[None], axis=2)
    assert np.allclose(d, np.sort(full, axis=1)[:, :9], atol=1e-4)
    assert np.allclose(np.take_along_axis(full, idx, axis=1), d, atol=1e-4)
    assert idx.dtype == np.int64 and d.shape == idx.shape == (50, 9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 10.0))
def test_torch_knn_puts_bank_rows_at_exactly_zero(seed, spread):
    """Bank rows as queries (a shared post-ReLU-like component much larger than the spread, where the
    GEMM expansion cancels): distance 0 to themselves, and the others equal to a direct computation."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 5.0, size=96).astype(np.float32)
    bank = (base + spread * rng.normal(size=(700, 96))).astype(np.float32)
    rows = rng.choice(700, size=60, replace=False)
    d, idx = NearestNeighbours(bank, backend="torch").search(bank[rows], 3)
    assert np.all(d[:, 0] == 0.0) and np.array_equal(idx[:, 0], rows)
    direct = np.linalg.norm(bank[rows][:, None] - bank[idx], axis=2)
    np.testing.assert_allclose(d, direct, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(d, axis=1) >= 0)


def test_knn_backends_agree_on_real_scale_patch_features():
    """faiss and the torch GEMM on PatchCore-like features (1536-d, large common component): the same
    neighbours except near-ties, distances to float32 rounding."""
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 1.0, size=1536).astype(np.float32)  # post-ReLU-like shared component
    bank = (base + 0.3 * rng.normal(size=(2000, 1536))).astype(np.float32)
    q = (base + 0.3 * rng.normal(size=(5000, 1536))).astype(np.float32)  # > one query chunk
    d_f, i_f = NearestNeighbours(bank, backend="faiss").search(q, 9)
    d_t, i_t = NearestNeighbours(bank, backend="torch").search(q, 9)
    np.testing.assert_allclose(d_t, d_f, rtol=1e-4)
    differ = np.flatnonzero(i_t[:, 0] != i_f[:, 0])
    assert len(differ) < 0.01 * len(q)
    exact = [np.linalg.norm(q[differ].astype(np.float64) - bank[i[differ, 0]], axis=1) for i in (i_t, i_f)]
    np.testing.assert_allclose(exact[0], exact[1], rtol=1e-5)  # where they differ, the two are a near-tie


def test_knn_backend_choice():
    from ad_core.models.knn import resolve_backend
    from ad_core.models.products import bf16_speedup

    assert resolve_backend("cpu") == ("bfloat16" if bf16_speedup() >= 1.4 else "faiss")
    assert resolve_backend("cuda") in ("faiss-gpu", "torch")  # no device needed to decide
    with pytest.raises(ValueError, match="kNN backend must be one of"):
        resolve_backend("cpu", "annoy")


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
