"""Item embeddings with the packaged MiniLM encoder: shape, normalisation, cache, meaning."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from data.embeddings import embed_items, load_embeddings
from data.errors import DataError


def test_shape_and_norm(ml100k, ml100k_embeddings):
    assert ml100k_embeddings.shape == (ml100k.num_items, 384)
    assert ml100k_embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ml100k_embeddings, axis=1), 1.0, atol=1e-4)


def test_sequels_are_closer_than_random_pairs(ml100k, ml100k_embeddings):
    titles = ml100k.items["title"].tolist()
    jedi = titles.index("Return of the Jedi (1983)")
    star_wars = titles.index("Star Wars (1977)")
    empire = titles.index("Empire Strikes Back, The (1980)")
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, ml100k.num_items, size=(2000, 2))
    random_cos = float(np.mean(np.sum(ml100k_embeddings[pairs[:, 0]] * ml100k_embeddings[pairs[:, 1]], axis=1)))
    assert ml100k_embeddings[jedi] @ ml100k_embeddings[star_wars] > random_cos + 0.2
    assert ml100k_embeddings[jedi] @ ml100k_embeddings[empire] > random_cos + 0.2


def test_cached_second_call(ml100k, ml100k_embeddings):
    again = embed_items(ml100k, show_progress=False)
    assert again.cached and again.seconds == 0.0
    np.testing.assert_array_equal(again.vectors, ml100k_embeddings)
    np.testing.assert_array_equal(load_embeddings("ml-100k"), ml100k_embeddings)


def test_cache_key_follows_text(recbole_dir, ml100k_embeddings):
    from data.prepare import PrepareConfig, prepare

    first = embed_items(prepare(PrepareConfig(str(recbole_dir), name="emb")), show_progress=False)
    item = recbole_dir / "tiny.item"
    # a title no earlier session has embedded: the cache under $GR2_HOME/cache is shared between sessions
    item.write_text(item.read_text().replace("Alpha Quest", f"Alpha Quest {uuid.uuid4().hex[:8]}"))
    second = embed_items(prepare(PrepareConfig(str(recbole_dir), name="emb")), show_progress=False)
    assert not second.cached and second.path != first.path
    assert not np.allclose(first.vectors[0], second.vectors[0])
    np.testing.assert_allclose(first.vectors[1:], second.vectors[1:], atol=1e-5)


def test_missing_encoder_and_embeddings(ml100k, recbole_dir, tmp_path):
    with pytest.raises(DataError, match="encoder model directory not found"):
        embed_items(ml100k, model_path=tmp_path / "no-model")
    from data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(str(recbole_dir), name="noemb"))
    with pytest.raises(DataError, match="run `gr2 data embed noemb` first"):
        load_embeddings("noemb")
