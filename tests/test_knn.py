"""Nearest neighbours (ad_core/models/kernels/knn.py): the backends' registry, its one rule, and nested prefixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ad_core.models.kernels import knn
from ad_core.models.kernels.knn import NearestNeighbours, NestedNeighbours

pytestmark = pytest.mark.fast


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



@pytest.mark.parametrize("backend", ["exact", "faiss", "torch"])
def test_knn_distances_equal_brute_force(backend):
    """The CPU backends (exact filter, faiss) and torch (CUDA without a faiss GPU index)."""
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


def test_the_rule_picks_from_the_device_alone_and_never_from_a_timing(monkeypatch):
    import time

    def no_timing(*_a):
        raise AssertionError("the backend rule must not time anything")

    monkeypatch.setattr(time, "perf_counter", no_timing)
    assert knn.resolve_backend("cpu") == "exact"
    monkeypatch.setattr(knn, "faiss_has_gpu", lambda: True)
    assert knn.resolve_backend("cuda") == "faiss-gpu"
    monkeypatch.setattr(knn, "faiss_has_gpu", lambda: False)
    assert knn.resolve_backend("cuda") == "torch"
    assert knn.resolve_backend("cpu", "faiss") == "faiss"  # an override is taken as given ...
    with pytest.raises(knn.KnnBackendError, match="no GPU index"):  # ... when it can run here
        knn.resolve_backend("cuda", "faiss-gpu")
    with pytest.raises(knn.KnnBackendError, match="kNN backend must be one of"):
        knn.resolve_backend("cpu", "annoy")


def test_every_backend_is_registered_with_the_one_interface():
    assert knn.BACKENDS == ("auto", *knn.REGISTRY)
    rng = np.random.default_rng(1)
    bank, q = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(10, 8)).astype(np.float32)
    for name, backend in knn.REGISTRY.items():
        if backend.unavailable(torch.device("cuda" if torch.cuda.is_available() else "cpu")):
            continue
        d, idx = NearestNeighbours(bank, backend=name).search(q, 3)
        assert d.shape == idx.shape == (10, 3) and d.dtype == np.float32 and idx.dtype == np.int64, name


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 200), st.integers(1, 12), st.booleans())
def test_the_cpu_rules_answer_is_a_float64_brute_force_with_ties_to_the_lower_index(seed, m, k, duplicated):
    """What makes a run's numbers independent of the machine: 'auto' on a CPU answers exactly."""
    rng = np.random.default_rng(seed)
    bank = (5.0 + rng.normal(size=(m, 16))).astype(np.float32)
    if duplicated:
        bank[m // 2:] = bank[: m - m // 2]
    queries = np.concatenate([rng.normal(5.0, 1.0, size=(20, 16)).astype(np.float32), bank[:3]])
    d, idx = NearestNeighbours(bank, "cpu").search(queries, k)
    exact = ((queries[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(2)
    want = np.lexsort((np.broadcast_to(np.arange(m), exact.shape), exact), axis=1)[:, :min(k, m)]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(d, np.sqrt(np.take_along_axis(exact, want, 1)).astype(np.float32))


def test_faiss_is_optional_and_its_absence_or_a_double_install_is_said(monkeypatch):
    """No faiss: the CPU rule needs none, CUDA falls back to torch, a forced faiss backend says what to
    install; faiss-cpu beside faiss-gpu (one module, two wheels) is refused naming both."""
    import importlib.util
    from importlib import metadata

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else
                        real_find_spec(name, *a))
    assert not knn.faiss_installed() and not knn.faiss_has_gpu()
    assert knn.resolve_backend("cpu") == "exact"
    assert knn.resolve_backend("cuda") == "torch"
    with pytest.raises(knn.KnnBackendError, match=r"faiss is not installed: pip install faiss-cpu"):
        knn.resolve_backend("cpu", "faiss")
    with pytest.raises(knn.KnnBackendError, match=r"pip install -e '.\[gpu\]' brings faiss-gpu"):
        knn.resolve_backend("cuda", "faiss-gpu")
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "1.15.1" if name == "faiss-gpu" else real_version(name))
    with pytest.raises(knn.KnnBackendError, match="faiss-cpu and faiss-gpu are both installed"):
        knn.resolve_backend("cpu", "faiss")


def test_faiss_is_imported_only_where_a_faiss_backend_is_used():
    """No module imports faiss at load time (a base install has none): every import is inside a function."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("ad_core/**/*.py"), *root.glob("experiments/**/*.py")]:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            assert "faiss" not in names, f"{path}: faiss imported at module level"

