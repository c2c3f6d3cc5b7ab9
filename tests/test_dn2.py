"""DN2 (Bergman et al. 2020): pooled features, mean distance to the k nearest training images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ad_core.models.dn2 import DN2

pytestmark = pytest.mark.fast


def batch(x: np.ndarray, grid: int = 3) -> dict[str, torch.Tensor]:
    """(N, C) vectors as a constant layer3 map (N, C, grid, grid): pooling gives them back."""
    return {"layer3": torch.from_numpy(x).float()[:, :, None, None].expand(-1, -1, grid, grid).contiguous()}


def test_embedding_is_the_global_average_of_each_layer():
    g = torch.Generator().manual_seed(0)
    feats = {"layer2": torch.rand(2, 4, 6, 6, generator=g), "layer3": torch.rand(2, 5, 3, 3, generator=g)}
    emb = DN2(layers=("layer2", "layer3")).embed(feats)
    expected = np.concatenate([feats["layer2"].mean((2, 3)).numpy(), feats["layer3"].mean((2, 3)).numpy()], 1)
    np.testing.assert_allclose(emb, expected, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(n_train=st.integers(2, 12), n_test=st.integers(1, 6), dim=st.integers(1, 8), k=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_score_is_mean_distance_to_k_nearest_training_images(n_train, n_test, dim, k, seed):
    rng = np.random.default_rng(seed)
    train, test = rng.normal(size=(n_train, dim)), rng.normal(size=(n_test, dim))
    k = min(k, n_train)
    model = DN2(k=k).fit([batch(train[: n_train // 2 + 1]), batch(train[n_train // 2 + 1:])])
    scores, maps = model.score(batch(test))
    d = np.linalg.norm(test[:, None] - train.astype(np.float32)[None], axis=2)  # brute force, all pairs
    expected = np.sort(d, axis=1)[:, :k].mean(axis=1)
    assert maps is None
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_outlier_scores_higher_and_a_training_image_scores_half_its_neighbour_distance():
    train = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    model = DN2().fit(batch(train))
    scores, _ = model.score(batch(np.array([[0.0, 0.0], [5.0, 5.0]])))
    assert scores[0] == pytest.approx(0.5)  # itself at 0, the next at 1: mean of (0, 1)
    assert scores[1] > 6


def test_save_load_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    model = DN2(k=2).fit(batch(rng.normal(size=(5, 4))))
    model.save(tmp_path / "dn2.npz")
    again = DN2.load(tmp_path / "dn2.npz")
    test = batch(rng.normal(size=(3, 4)))
    np.testing.assert_array_equal(again.score(test)[0], model.score(test)[0])
    assert again.get_params() == {"k": 2, "layers": ["layer3"]} and again.fit_summary() == {"n_train_images": 5}
    with pytest.raises(ValueError, match="at least k=3 training images, got 2"):
        DN2(k=3).fit(batch(rng.normal(size=(2, 4))))
    with pytest.raises(RuntimeError, match="not fitted"):
        DN2().score(test)
