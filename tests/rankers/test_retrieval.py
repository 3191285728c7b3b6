"""Retrievers: hand-made co-occurrence, faiss content search, and real behaviour on ML-100K."""

from __future__ import annotations

import numpy as np
import pytest

from rankers.errors import ConfigError
from rankers.evaluate import evaluate
from rankers.retrieval import (
    ContentConfig,
    ContentRanker,
    CooccurrenceConfig,
    CooccurrenceRanker,
    PopularityConfig,
    PopularityRanker,
)


def test_popularity_counts_and_recency_weighting():
    seqs = [np.array([0, 1, 2]), np.array([2, 2, 3])]
    pop = PopularityRanker().fit(seqs, 5)
    assert pop.counts.tolist() == [1, 1, 3, 1, 0]
    assert pop.score([np.array([0])]).shape == (1, 5)
    recent = PopularityRanker(PopularityConfig(recency_half_life=1.0)).fit([np.array([0, 1])], 2)
    assert recent.counts.tolist() == [0.5, 1.0]  # the latest item counts fully, one step older half


def test_cooccurrence_is_order_aware_and_gap_weighted():
    cfg = CooccurrenceConfig(window=2, backward_weight=0.5, popularity_alpha=0.0)
    cooc = CooccurrenceRanker(cfg).fit([np.array([0, 1, 2]), np.array([0, 1])], 4)
    m = cooc.matrix.toarray()
    assert m[0, 1] == pytest.approx(2.0)  # 0 -> 1 twice at gap 1
    assert m[1, 0] == pytest.approx(1.0)  # backwards, half weight
    assert m[0, 2] == pytest.approx(0.5)  # gap 2
    assert m[2, 0] == pytest.approx(0.25)
    s = cooc.score([np.array([0])])[0]
    assert np.argmax(s) == 1 and s[2] > s[3]  # item 3 never co-occurs: popularity fallback only
    # The latest history item votes most.
    s = cooc.score([np.array([2, 0])])[0]
    assert s[1] > s[3]
    with pytest.raises(ConfigError):
        CooccurrenceRanker(CooccurrenceConfig(window=0)).fit([np.array([0, 1])], 2)


def test_content_ranker_uses_faiss_exactly_with_a_flat_index():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ranker = ContentRanker(emb, ContentConfig(history_decay=0.5)).fit([], 60)
    hist = [np.array([3, 7]), np.array([10])]
    user = ranker.user_vectors(hist)
    np.testing.assert_allclose(user[0], (0.5 * emb[3] + emb[7]) / 1.5, rtol=1e-5)
    np.testing.assert_allclose(ranker.score(hist), user @ emb.T, rtol=1e-4, atol=1e-5)
    idx, _ = ranker.search(hist, 1)
    assert idx[1, 0] == 10  # an item is its own nearest neighbour
    hnsw = ContentRanker(emb, ContentConfig(index="hnsw")).fit([], 60)
    assert len(set(hnsw.search(hist, 10)[0][0]) & set(idx[0].tolist() + ranker.search(hist, 10)[0][0].tolist())) >= 8
    with pytest.raises(ConfigError, match=r"available: \['flat', 'hnsw'\]"):
        ContentRanker(emb, ContentConfig(index="ivf"))


def test_cooccurrence_beats_popularity_on_ml100k(ml100k):
    train, valid = ml100k.train_sequences(), ml100k.eval_examples("valid")
    pop = evaluate(PopularityRanker().fit(train, ml100k.num_items), valid)
    cooc = evaluate(CooccurrenceRanker().fit(train, ml100k.num_items), valid)
    assert cooc["ndcg@10"] > 2 * pop["ndcg@10"] and cooc["hr@50"] > pop["hr@50"]


@pytest.mark.slow
def test_content_ann_on_ml100k_beats_random(ml100k, ml100k_embeddings):
    valid = ml100k.eval_examples("valid")
    content = evaluate(ContentRanker(ml100k_embeddings).fit([], ml100k.num_items), valid)
    assert content["hr@50"] > 2 * 50 / ml100k.num_items  # random ranking would give about 50 / 1682
