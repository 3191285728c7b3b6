"""Bad input to the quantizers stops with a clear DataError, never a faiss/torch traceback."""

import json

import numpy as np
import pytest

from data.errors import DataError
from tokenizer import RQVAE, Quantizer, RQKMeans, RQKMeansConfig, RQVAEConfig, make_quantizer


@pytest.fixture(scope="module")
def small_x(ml100k_embeddings):
    return ml100k_embeddings[:400]


@pytest.fixture(scope="module")
def saved(small_x, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "kmeans"
    RQKMeans(RQKMeansConfig(levels=2, codebook_size=16)).fit(small_x).save(out)
    return out


@pytest.mark.parametrize("method", ["rq-kmeans", "rq-vae"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings(small_x, method, value):
    x = small_x.copy()
    x[17, 3] = value
    with pytest.raises(DataError, match=r"NaN/inf values in 1 rows \(first: row 17\)"):
        make_quantizer(method, levels=2, codebook_size=16).fit(x)


@pytest.mark.parametrize("method", ["rq-kmeans", "rq-vae"])
def test_fewer_items_than_codes(small_x, method):
    with pytest.raises(DataError, match="10 items but the codebook has 16 codes"):
        make_quantizer(method, levels=2, codebook_size=16).fit(small_x[:10])


def test_wrong_shapes_and_dimensions(saved, small_x):
    q = Quantizer.load(saved)
    with pytest.raises(DataError, match="384 dimensions but the quantizer was fitted on 384|fitted on 384"):
        q.encode(small_x[:, :100])
    with pytest.raises(DataError, match="2-D"):
        q.encode(small_x[0])
    with pytest.raises(DataError, match="not a numeric array"):
        q.encode([["a", "b"]])
    with pytest.raises(DataError, match=r"codes must lie in \[0, 16\)"):
        q.decode(np.array([[0, 16]]))
    with pytest.raises(DataError, match=r"shape \(items, 2\)"):
        q.decode(np.array([[0, 1, 2]]))


def test_unknown_method_and_option():
    with pytest.raises(DataError, match="unknown tokenizer method 'pq'"):
        make_quantizer("pq")
    with pytest.raises(DataError, match=r"rq-kmeans.epochs: unknown key \(rq-kmeans has: .*niter"):
        make_quantizer("rq-kmeans", epochs=3)
    with pytest.raises(ValueError, match="ema_decay"):
        RQVAE(RQVAEConfig(ema_decay=1.5))


def test_corrupt_weights(saved, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    data = (bad / "weights.npz").read_bytes()
    (bad / "weights.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt weights: checksum"):
        Quantizer.load(bad)


def test_corrupt_or_mismatched_metadata(saved, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    (bad / "quantizer.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt quantizer metadata"):
        Quantizer.load(bad)

    meta = json.loads((saved / "quantizer.json").read_text())
    meta["config"]["codebook_size"] = 32  # weights no longer fit the config
    (bad / "quantizer.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"corrupt quantizer .*centroids of shape"):
        Quantizer.load(bad)

    with pytest.raises(DataError, match="holds a 'rq-kmeans' quantizer, not 'rq-vae'"):
        RQVAE.load(saved)
    with pytest.raises(DataError, match="quantizer.json is missing"):
        Quantizer.load(tmp_path / "nowhere")


def test_unfitted_quantizer_refuses_to_encode(small_x):
    with pytest.raises(RuntimeError, match="not fitted"):
        RQKMeans().encode(small_x)
