"""The greedy coreset (ad_core/models/kernels/coreset.py, kcenter_cpu.py): the same indices as a brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ad_core.models.kernels.coreset import greedy_coreset, greedy_coreset_dense
from ad_core.models.kernels.kcenter_cpu import BatchedKCenter

pytestmark = pytest.mark.fast


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
