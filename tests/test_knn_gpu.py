"""The CUDA rule's kNN backends on a GPU (marker ``gpu``, run by benchmarks/gpu_check.sh): faiss-gpu and
torch on CUDA against the CPU rule's exact search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ad_core.models.kernels import knn
from ad_core.models.kernels.knn import NearestNeighbours


@pytest.mark.gpu
def test_faiss_gpu_torch_cuda_and_exact_agree_on_one_bank():
    """On CUDA (benchmarks/gpu_check.sh): the CUDA rule's backends against the CPU rule's exact search on
    one PatchCore-like bank (1536-d, shared post-ReLU component, 20,000 rows, 4,096 queries, k=9)."""
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device visible to torch {torch.__version__}: the CUDA backends cannot run here")
    rng = np.random.default_rng(2)
    base = rng.gamma(2.0, 1.0, size=1536).astype(np.float32)
    bank = (base + 0.3 * rng.normal(size=(20_000, 1536))).astype(np.float32)
    q = (base + 0.3 * rng.normal(size=(4096, 1536))).astype(np.float32)
    d_e, i_e = NearestNeighbours(bank, device="cpu", backend="exact").search(q, 9)
    backends = ["torch"] + (["faiss-gpu"] if knn.faiss_has_gpu() else [])
    assert knn.resolve_backend("cuda") == backends[-1], "the CUDA rule: faiss-gpu where its index is there"
    for backend in backends:
        d, i = NearestNeighbours(bank, device="cuda", backend=backend).search(q, 9)
        np.testing.assert_allclose(d, d_e, rtol=1e-4, err_msg=backend)
        differ = np.flatnonzero(i[:, 0] != i_e[:, 0])
        assert len(differ) < 0.01 * len(q), f"{backend}: {len(differ)} first neighbours differ"
        exact = [np.linalg.norm(q[differ].astype(np.float64) - bank[j[differ, 0]], axis=1) for j in (i, i_e)]
        np.testing.assert_allclose(exact[0], exact[1], rtol=1e-5, err_msg=f"{backend}: not near-ties")
    if not knn.faiss_has_gpu():
        pytest.skip("faiss-gpu's index is not installed here (pip install -e '.[gpu]'): torch and exact agree, "
                    "faiss-gpu not checked")
