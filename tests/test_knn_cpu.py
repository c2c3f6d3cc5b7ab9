"""The bfloat16-filtered exact kNN (ad_core/models/kernels/knn_cpu.py): its answer is a float64 brute force's."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from ad_core.models.kernels import knn_cpu
from ad_core.models.kernels.knn import NearestNeighbours
from ad_core.models.kernels.knn_cpu import FilteredNeighbours
from ad_core.models.kernels.products import squared_distance

pytestmark = pytest.mark.fast


@njit(cache=True)
def _all_d2(queries, bank):
    out = np.empty((queries.shape[0], bank.shape[0]))
    for i in range(queries.shape[0]):
        for j in range(bank.shape[0]):
            out[i, j] = squared_distance(queries, i, bank, j)
    return out


def brute_force(queries: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k smallest float64 squared distances (the same sums as the kernel's), ties to the lower index."""
    d2 = _all_d2(queries, bank)
    idx = np.stack([np.lexsort((np.arange(len(bank)), row))[:k] for row in d2])
    return np.take_along_axis(d2, idx, 1), idx


def points(seed: int, n_bank: int, n_query: int, dim: int, offset: float, spread: float, duplicates: int):
    """Post-ReLU-like points: a shared component ``offset`` times larger than ``spread``, some bank
    rows repeated (exact ties) and some queries equal to bank rows (distance 0)."""
    rng = np.random.default_rng(seed)
    base = offset * rng.gamma(2.0, 1.0, size=dim)
    bank = (base + spread * rng.normal(size=(n_bank, dim))).astype(np.float32)
    if duplicates:
        bank[rng.integers(0, n_bank, duplicates)] = bank[rng.integers(0, n_bank, duplicates)]
    queries = (base + spread * rng.normal(size=(n_query, dim))).astype(np.float32)
    copies = rng.integers(0, n_bank, n_query // 3)
    queries[: len(copies)] = bank[copies]
    return bank, queries


CASES = dict(seed=st.integers(0, 2**31 - 1), n_bank=st.integers(1, 400), n_query=st.integers(1, 300),
             dim=st.integers(1, 80), k=st.integers(1, 12), offset=st.sampled_from([0.0, 1.0, 30.0, 1e3]),
             spread=st.sampled_from([1e-3, 0.1, 1.0, 10.0]), duplicates=st.integers(0, 20))


@settings(max_examples=40, deadline=None)
@given(**CASES, native=st.booleans())
def test_search_equals_float64_brute_force(seed, n_bank, n_query, dim, k, offset, spread, duplicates, native):
    """Either product (a bfloat16 GEMM where the CPU has the instructions, float32 of the same operands
    otherwise) gives the float64 brute force's neighbours and distances."""
    bank, queries = points(seed, n_bank, n_query, dim, offset, spread, duplicates)
    k = min(k, n_bank)
    with mock.patch.object(knn_cpu, "bf16_native", lambda: native):
        d2, idx = FilteredNeighbours(bank).search(queries, k)
    want_d2, want_idx = brute_force(queries, bank, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(d2, want_d2)


@settings(max_examples=40, deadline=None)
@given(**CASES, native=st.booleans())
def test_band_bounds_every_filtered_distance(seed, n_bank, n_query, dim, k, offset, spread, duplicates, native):
    """|exact - key| <= rho |key| + E for every pair: the premise of the threshold, on data where the
    norms are up to 1e5 times the distances, for either product."""
    bank, queries = points(seed, n_bank, n_query, dim, offset, spread, duplicates)
    with mock.patch.object(knn_cpu, "bf16_native", lambda: native):
        index = FilteredNeighbours(bank)
        bank_t, _, _ = index._bank_t(1)
    assert bank_t.dtype == (torch.bfloat16 if native else torch.float32)
    aug, band = index._augment(queries)
    key = knn_cpu._product(aug, bank_t).float().double().numpy()[:, :n_bank]
    exact = _all_d2(queries, bank)
    assert np.all(np.abs(exact - key) <= knn_cpu._RHO * np.abs(key) + band[:, None])


def test_blocks_and_prepared_chunks_do_not_change_the_answer(monkeypatch):
    bank, queries = points(3, 500, 700, 24, 5.0, 1.0, 10)
    want = FilteredNeighbours(bank).search(queries, 9)
    monkeypatch.setattr(knn_cpu, "_QUERIES", 7)
    monkeypatch.setattr(knn_cpu, "_PREPARED", 50)
    got = FilteredNeighbours(bank).search(queries, 9)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_real_scale_points_agree_with_faiss_except_near_ties():
    """ELPV-like (152-d post-ReLU, 5,000-row bank, k=9): faiss's float32 answer up to its rounding."""
    bank, queries = points(1, 5000, 3000, 152, 3.0, 1.0, 0)
    d_b, i_b = NearestNeighbours(bank, backend="exact").search(queries, 9)
    d_f, i_f = NearestNeighbours(bank, backend="faiss").search(queries, 9)
    assert d_b.dtype == np.float32 and i_b.dtype == np.int64
    # faiss's |q|^2 + |b|^2 - 2 q.b in float32 leaves ~1e-3 at distance 0 (queries equal to bank rows),
    # ~0.03 after the square root; elsewhere it agrees to float32 rounding
    np.testing.assert_allclose(d_b, d_f, rtol=1e-4, atol=0.1)
    assert np.all(d_b[:1000, 0] == 0)  # the first third of the queries are bank rows
    assert (i_b != i_f).any(axis=1).mean() < 0.01
    rows = np.arange(0, 3000, 7)
    want_d2, want_idx = brute_force(queries[rows], bank, 9)
    np.testing.assert_array_equal(i_b[rows], want_idx)
    np.testing.assert_allclose(d_b[rows], np.sqrt(want_d2), rtol=1e-6)


def test_the_filter_keeps_few_entries_on_clustered_points():
    """The speed premise: on clustered 152-d points only a few entries beyond the k get exact sums
    (ELPV's real banks: ~15 for k = 9), counted by the kernel itself (``exact_counts``)."""
    bank, queries = points(2, 4000, 512, 152, 3.0, 1.0, 0)
    index = FilteredNeighbours(bank)
    index.search(queries, 9)
    kept = index.exact_counts
    assert kept.shape == (len(queries),) and kept.min() >= 9 and np.median(kept) < 0.02 * len(bank)


@pytest.mark.parametrize("where", ["bank", "query"])
def test_non_finite_features_are_refused_with_the_row(where):
    bank, queries = points(0, 50, 10, 8, 1.0, 1.0, 0)
    (bank if where == "bank" else queries)[3, 2] = np.nan
    with pytest.raises(ValueError, match=rf"kNN {where} row 3 .*NaN or inf"):
        FilteredNeighbours(bank).search(queries, 3)


@pytest.mark.parametrize("native", [True, False])
def test_the_filter_runs_on_bfloat16_operands(native):
    """bfloat16 operands and a bfloat16 result; the bank's operand a float32 copy where the CPU has no
    bfloat16 instructions (its values exactly the bfloat16 ones)."""
    with mock.patch.object(knn_cpu, "bf16_native", lambda: native):
        index = FilteredNeighbours(points(0, 50, 1, 8, 1.0, 1.0, 0)[0])
        bank_t, groups, m = index._bank_t(3)
    assert bank_t.dtype == (torch.bfloat16 if native else torch.float32)
    assert bank_t.shape == (32, groups * m) and m >= 3
    assert torch.equal(bank_t, bank_t.to(torch.bfloat16).to(bank_t.dtype))
    aug, _ = index._augment(points(1, 50, 4, 8, 1.0, 1.0, 0)[1])
    assert aug.dtype == torch.bfloat16 and knn_cpu._product(aug, bank_t).dtype == torch.bfloat16


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_bank=st.integers(9, 300), k=st.integers(1, 9),
       width=st.sampled_from([0.01, 0.1, 0.5]))
def test_threshold_survives_worst_case_errors(seed, n_bank, k, width):
    """Products erring by up to the band in the worst direction (the true k nearest look further, all
    others nearer, then rounded to bfloat16): the kernel still returns the exact k nearest."""
    bank, queries = points(seed, n_bank, 40, 6, 1.0, 1.0, 0)
    exact = _all_d2(queries, bank)
    want_d2, want_idx = brute_force(queries, bank, k)
    band = width * np.median(exact, axis=1)
    sign = -np.ones_like(exact)
    np.put_along_axis(sign, want_idx, 1.0, axis=1)
    worst = exact + 0.999 * sign * band[:, None]
    groups = max(1, min(knn_cpu._GROUP, n_bank // k))
    m = -(-n_bank // groups)
    key = torch.full((len(queries), groups * m), float("inf"))
    key[:, :n_bank] = torch.from_numpy(worst)
    bits = key.to(torch.bfloat16).view(torch.int16).numpy().reshape(len(queries), groups, m)
    d2, idx = np.empty((len(queries), k)), np.empty((len(queries), k), np.int64)
    knn_cpu._filter_select(bits, band, queries, bank, k, d2, idx, np.empty(len(queries), np.int64))
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(d2, want_d2)
