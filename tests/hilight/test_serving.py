"""`/v1/rerank` with `"emphasis": "hilight"`: the run's actor marks the history before the solver ranks, and the
response says what it marked; without an actor, or with explicit positions too, the request is refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(hilight_run, tiny_sid_model, ml100k_catalog):
    """The transformers engine (no vLLM start) with and without the run's emphasizer."""
    from gr2.engines.hf_engine import TransformersRerankEngine
    from gr2.engines.vllm_engine import EngineSettings
    from hilight.emphasizer import Emphasizer
    from serving.app import TrainedShape, create_app

    run, _ = hilight_run
    engine = TransformersRerankEngine(EngineSettings(str(tiny_sid_model), max_model_len=2048, max_new_tokens=96,
                                                     max_reasoning_tokens=4, timeout_s=120))
    engine.start()
    trained = TrainedShape(max_history=10, k=10)
    with_actor = create_app(engine, ml100k_catalog, "tiny", start_engine=False, trained=trained,
                            emphasizer=Emphasizer.from_dir(run / "hilight" / "actor"))
    without = create_app(engine, ml100k_catalog, "tiny", start_engine=False, trained=trained)
    with TestClient(with_actor) as a, TestClient(without) as b:
        yield a, b, engine
    engine.shutdown()


def body(ml100k_catalog, history: int = 12, **extra) -> dict:
    ids = ml100k_catalog.item_ids
    return {"history": [{"id": ids[i]} for i in range(100, 100 + history)],
            "candidates": [{"id": ids[i]} for i in range(300, 310)], **extra}


def test_hilight_emphasis_is_applied_and_returned(served, ml100k_catalog):
    client, _, engine = served
    response = client.post("/v1/rerank", json=body(ml100k_catalog, emphasis="hilight"))
    assert response.status_code == 200, response.text
    answer = response.json()
    spans = answer["emphasis_spans"]
    assert sorted(r["index"] for r in answer["results"]) == list(range(10))
    assert 1 <= len(spans) <= 5
    # the history was cut to the 10 most recent: positions are the request's, always in the kept part
    assert all(2 <= s["history_index"] < 12 for s in spans)
    assert all(s["id"] == ml100k_catalog.item_ids[100 + s["history_index"]] for s in spans)
    assert all(s["text"] == ml100k_catalog.sids.sid(100 + s["history_index"]) + " "
               + ml100k_catalog.titles[100 + s["history_index"]] for s in spans)  # items granularity: whole lines
    plain = client.post("/v1/rerank", json=body(ml100k_catalog))
    assert plain.status_code == 200 and plain.json()["emphasis_spans"] is None


def test_the_prompt_carries_the_spans(served, ml100k_catalog):
    from gr2.rerank_format import EMPHASIS_OPEN, PromptItem

    client, _, engine = served
    answer = client.post("/v1/rerank", json=body(ml100k_catalog, history=5, emphasis="hilight")).json()
    spans = answer["emphasis_spans"]
    items = [PromptItem(ml100k_catalog.sids.sid(i), ml100k_catalog.titles[i]) for i in range(100, 105)]
    cands = [PromptItem(ml100k_catalog.sids.sid(i), ml100k_catalog.titles[i]) for i in range(300, 310)]
    prompt = engine.prompt(items, cands, {s["history_index"]: [(s["start"], s["end"])] for s in spans})
    user = prompt.split("User history")[1]  # the system prompt names the tags too
    assert user.count(EMPHASIS_OPEN) == len(spans)
    assert all(f"{EMPHASIS_OPEN}{s['text']}" in user for s in spans)


def test_hilight_without_an_actor_or_with_positions_is_refused(served, ml100k_catalog):
    client, without, _ = served
    refused = without.post("/v1/rerank", json=body(ml100k_catalog, emphasis="hilight"))
    assert refused.status_code == 422 and "gr2 hilight train" in refused.json()["detail"]
    both = client.post("/v1/rerank", json=body(ml100k_catalog, emphasis="hilight", emphasize_history=[3]))
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert client.post("/v1/rerank", json=body(ml100k_catalog, emphasis="bold")).status_code == 422
