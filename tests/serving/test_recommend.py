"""/v1/recommend: retrieval -> the run's SASRec -> GR2 rerank, on the real engine; 4xx for bad input."""

from __future__ import annotations

import numpy as np
import pytest


def test_known_user_gets_unseen_reranked_candidates(client, ml100k, ml100k_catalog, cascade):
    user = ml100k.user_ids[7]
    r = client.post("/v1/recommend", json={"user_id": user, "top_n": 5, "return_reasoning": True})
    assert r.status_code == 200, r.text
    out = r.json()
    seen = {ml100k_catalog.item_ids[i] for i in ml100k.sequences[7]}
    assert len(out["candidates"]) == 10 and not set(out["candidates"]) & seen
    assert out["retrieved"] == 100 and out["user_id"] == user
    ids = [x["id"] for x in out["results"]]
    assert len(ids) == len(set(ids)) == 5 and set(ids) <= set(out["candidates"])
    assert [out["candidates"][x["pre_rank"]] for x in out["results"]] == ids
    assert out["usage"]["completion_tokens"] > 0 and not out["fallback"] and isinstance(out["reasoning"], str)
    # the candidates are the ranker's order of the retrieved pool: the cascade computes the same list
    pool = cascade.candidates(np.asarray(ml100k.sequences[7]), 10)
    assert out["candidates"] == [ml100k_catalog.item_ids[i] for i in pool.items]
    assert pool.scores == sorted(pool.scores, reverse=True)


def test_explicit_history_and_cascade_depth(client, ml100k_catalog):
    history = [{"id": ml100k_catalog.item_ids[i]} for i in (0, 1, 49, 171)]
    r = client.post("/v1/recommend", json={"history": history, "k": 15, "top_n": 15})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["candidates"]) == 15 and sorted(x["pre_rank"] for x in out["results"]) == list(range(15))
    assert out["user_id"] is None and not {h["id"] for h in history} & set(out["candidates"])


@pytest.mark.parametrize("payload, status, message", [
    ({"user_id": "no-such-user"}, 404, "unknown user_id 'no-such-user'"),
    ({"history": [{"id": "no-such-item"}]}, 422, "history[0]: unknown item id 'no-such-item'"),
    ({}, 422, "exactly one of user_id and history"),
    ({"user_id": "1", "history": [{"id": "1"}]}, 422, "exactly one of user_id and history"),
    ({"history": []}, 422, "at least one item"),
    ({"history": [{"id": "1"}] * 21}, 422, "history: at most 20"),
    ({"user_id": "1", "k": 25}, 422, "k: at most 20"),
    ({"user_id": "1", "top_n": 12}, 422, "top_n (12) cannot exceed k (10)"),
    ({"user_id": "1", "model": "gpt-5"}, 404, "model 'gpt-5' is not served here"),
    ({"user_id": "1", "top_n": 0}, 422, ""),
])
def test_bad_recommend_requests_get_4xx(client, payload, status, message):
    r = client.post("/v1/recommend", json=payload)
    assert r.status_code == status and message in r.text, r.text


def test_cascade_without_retriever_ranks_everything(ml100k, cascade):
    from serving.cascade import Cascade, CascadeSettings

    full = Cascade(ml100k, cascade.ranker, None, CascadeSettings(k=10))
    hist = np.asarray(ml100k.sequences[3])
    out = full.candidates(hist, 10)
    assert out.retrieved == ml100k.num_items - len(set(hist.tolist())) and len(out.items) == 10
    everything = full.candidates(hist, ml100k.num_items)  # more than the pool: the whole pool comes back
    assert len(everything.items) == out.retrieved and not set(everything.items) & set(hist.tolist())
