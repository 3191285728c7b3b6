import math

import numpy as np
import pytest

from tokenizer import RQKMeans, RQKMeansConfig, uniqueness, utilization


@pytest.fixture(scope="module")
def fitted(ml100k_embeddings):
    return RQKMeans(RQKMeansConfig(levels=3, codebook_size=64)).fit(ml100k_embeddings)


def test_codes_shape_range_and_usage(fitted, ml100k_embeddings):
    codes = fitted.encode(ml100k_embeddings)
    assert codes.shape == (1682, 3) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 64
    assert min(utilization(codes, 64)) > 0.9
    assert uniqueness(codes) > 0.5


def test_each_level_reduces_reconstruction_error(fitted, ml100k_embeddings):
    x = ml100k_embeddings
    codes = fitted.encode(x)
    errors = [np.mean((x - sum(fitted.centroids[lv][codes[:, lv]] for lv in range(n))) ** 2) for n in (1, 2, 3)]
    baseline = np.mean((x - x.mean(0)) ** 2)
    assert baseline > errors[0] > errors[1] > errors[2]
    assert np.mean((x - fitted.decode(codes)) ** 2) == pytest.approx(errors[2], rel=1e-4)


def test_deterministic_given_seed(fitted, ml100k_embeddings):
    again = RQKMeans(RQKMeansConfig(levels=3, codebook_size=64)).fit(ml100k_embeddings)
    assert np.array_equal(again.encode(ml100k_embeddings), fitted.encode(ml100k_embeddings))


def test_save_load_round_trip(fitted, ml100k_embeddings, tmp_path):
    fitted.save(tmp_path / "q")
    back = RQKMeans.load(tmp_path / "q")
    assert back.config == fitted.config
    assert np.array_equal(back.encode(ml100k_embeddings), fitted.encode(ml100k_embeddings))


def test_balanced_caps_cluster_sizes(ml100k_embeddings):
    q = RQKMeans(RQKMeansConfig(levels=2, codebook_size=32, balanced=True, balance_iters=2)).fit(ml100k_embeddings)
    codes = q.encode(ml100k_embeddings)
    cap = math.ceil(1682 / 32)
    for level in range(2):
        assert np.bincount(codes[:, level], minlength=32).max() <= cap
    plain = RQKMeans(RQKMeansConfig(levels=2, codebook_size=32)).fit(ml100k_embeddings).encode(ml100k_embeddings)
    assert np.bincount(plain[:, 0]).max() > cap  # unbalanced k-means would break the cap
