"""PaDiM (docs/protocol.md §6): streaming Gaussian, Mahalanobis, dims, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis
from torchvision.transforms.v2.functional import gaussian_blur as tv_gaussian_blur

from ad_core.models import PaDiM
from ad_core.models.common import gaussian_blur, upsample_maps
from ad_core.models.padim import padim_embedding

pytestmark = pytest.mark.fast
LAYERS = ("layer1", "layer2", "layer3")


def feature_batches(sizes=(3, 4, 2), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [{"layer1": torch.randn(b, 8, 16, 16, generator=g) * scale,
             "layer2": torch.randn(b, 12, 8, 8, generator=g) * scale,
             "layer3": torch.randn(b, 16, 4, 4, generator=g) * scale} for b in sizes]


def test_embedding_resizes_to_layer1_grid_nearest():
    emb = padim_embedding(feature_batches((1,))[0], LAYERS)
    assert emb.shape == (1, 36, 16, 16)
    f = feature_batches((1,))[0]
    assert torch.equal(emb[0, 8:20, 2 * 3, 2 * 5], f["layer2"][0, :, 3, 5])


@pytest.mark.parametrize("n_features", [1, 7, 36])
def test_selected_embedding_equals_full_embedding_indexed(n_features):
    model = PaDiM(n_features=n_features, seed=3).fit(feature_batches())
    batch = feature_batches((2,), seed=4)[0]
    assert torch.equal(model.embed(batch), padim_embedding(batch, LAYERS)[:, model.dims_])


@pytest.mark.parametrize(("sigma", "size"), [(4.0, 224), (4.0, 40), (1.0, 9), (2.5, 64)])
def test_separable_blur_equals_torchvision_2d_blur(sigma, size):
    maps = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(0)) * 10
    k = 2 * int(4.0 * sigma + 0.5) + 1
    torch.testing.assert_close(gaussian_blur(maps, sigma), tv_gaussian_blur(maps, [k, k], [sigma, sigma]),
                               rtol=1e-5, atol=1e-5)


def test_streaming_fit_equals_direct_gaussian_and_batching_does_not_matter():
    batches = feature_batches()
    model = PaDiM(n_features=20).fit(batches)
    one = PaDiM(n_features=20).fit({k: torch.cat([b[k] for b in batches]) for k in LAYERS})
    torch.testing.assert_close(model.mean_, one.mean_)
    torch.testing.assert_close(model.inv_covariance_, one.inv_covariance_, rtol=1e-4, atol=1e-4)
    emb = torch.cat([model.embed(b) for b in batches]).double()  # (N, d, H, W)
    x = emb[:, :, 5, 7].numpy()
    p = 5 * 16 + 7
    cov = np.cov(x, rowvar=False) + (0.01 + 1e-5) * np.eye(20)  # the study's eps + anomalib's stabilizer
    assert np.allclose(model.mean_[p].numpy(), x.mean(0), atol=1e-5)
    assert np.allclose(np.linalg.inv(model.inv_covariance_[p].double().numpy()), cov, rtol=1e-4, atol=1e-5)


def test_distance_is_mahalanobis_and_image_score_is_map_max():
    batches = feature_batches()
    model = PaDiM(n_features=20).fit(batches)
    test = feature_batches((2,), seed=5, scale=1.5)[0]
    grid = model.distances(test)
    emb = model.embed(test)[1, :, 3, 9].double().numpy()
    p = 3 * 16 + 9
    ref = mahalanobis(emb, model.mean_[p].double().numpy(), model.inv_covariance_[p].double().numpy())
    assert grid[1, 3, 9].item() == pytest.approx(ref, rel=1e-4)
    scores, maps = model.score(test)
    assert maps.shape == (2, 224, 224) and np.allclose(scores, maps.max(axis=(1, 2)))
    # default map: bilinear to 224 then the sigma=4 blur (anomalib's), so the image score is the blurred max
    expected = upsample_maps(grid, 224, 4.0).numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-6)
    unblurred = PaDiM(n_features=20, blur_sigma=None).fit(batches).score(test)[1]
    assert not np.allclose(unblurred, maps)


def test_dims_are_seeded_and_fixed():
    a, b = PaDiM(n_features=10).fit(feature_batches()), PaDiM(n_features=10).fit(feature_batches())
    c = PaDiM(n_features=10, seed=1).fit(feature_batches())
    assert torch.equal(a.dims_, b.dims_) and not torch.equal(a.dims_, c.dims_)
    assert len(set(a.dims_.tolist())) == 10 and int(a.dims_.max()) < 36
    with pytest.raises(ValueError, match="n_features must be in 1..36"):
        PaDiM(n_features=100).fit(feature_batches())


def test_save_load_round_trip(tmp_path):
    model = PaDiM(n_features=20, blur_sigma=4.0).fit(feature_batches())
    model.save(tmp_path / "padim.pt")
    loaded = PaDiM.load(tmp_path / "padim.pt")
    assert loaded.get_params() == model.get_params()
    test = feature_batches((2,), seed=3)[0]
    s1, m1 = model.score(test)
    s2, m2 = loaded.score(test)
    assert np.array_equal(s1, s2) and np.array_equal(m1, m2)


def test_usage_errors():
    with pytest.raises(ValueError, match="at least 2 training images"):
        PaDiM(n_features=5).fit(feature_batches((1,)))
    with pytest.raises(RuntimeError, match="not fitted"):
        PaDiM().score(feature_batches((1,))[0])
