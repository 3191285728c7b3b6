"""A bounded load test over real loopback TCP: 8 clients for a few seconds, every answer checked.

uvicorn serves the session app inside the test client's event loop (where the vLLM engine lives),
on 127.0.0.1; the clients are ``serving.load.run_load``, the code behind ``gr2 bench load``.
"""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(scope="module")
def loopback_url(served):
    from tests.serving.conftest import loopback

    with loopback(served[0], served[0].app) as url:
        yield url


@pytest.mark.slow
def test_bounded_load_on_loopback(loopback_url, ml100k, ml100k_catalog):
    from serving.load import mix, recommend_requests, rerank_requests, run_load

    requests = mix(rerank_requests(ml100k, ml100k_catalog, n=40), recommend_requests(ml100k, ml100k_catalog, n=20))
    stats = asyncio.run(run_load(loopback_url, requests, clients=8, seconds=6))
    assert stats["errors"] == 0 and stats["invalid"] == 0, stats["problems"]
    assert stats["ok"] >= 8 and stats["ok"] == stats["sent"]
    assert stats["p50_ms"] <= stats["p99_ms"]


def test_load_checks_catch_bad_answers():
    """The checks the load test relies on reject what a broken server could send."""
    from serving.load import check_recommend, check_rerank

    body = {"candidates": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}
    ok = {"results": [{"index": 2, "id": "c"}, {"index": 0, "id": "a"}, {"index": 1, "id": "b"}]}
    assert check_rerank(body)(ok) is None
    assert check_rerank(body)({"results": ok["results"][:2]}) is not None  # a candidate lost
    assert check_rerank(body)({"results": [{"index": 0, "id": "a"}] * 3}) is not None  # repeats
    assert check_rerank(body)({"results": [{"index": 0, "id": "b"}, *ok["results"][1:]]}) is not None
    assert check_rerank({**body, "top_n": 2})({"results": ok["results"][:2]}) is None
    rec = check_recommend({"top_n": 2}, seen={"x"})
    assert rec({"results": [{"id": "a"}, {"id": "b"}], "candidates": ["a", "b", "c"]}) is None
    assert rec({"results": [{"id": "x"}, {"id": "b"}], "candidates": ["x", "b", "c"]}) is not None
    assert rec({"results": [{"id": "a"}, {"id": "a"}], "candidates": ["a", "b"]}) is not None


def test_refusals_are_counted_apart_and_retry_after_is_honoured():
    """A 429/503 is a refusal: counted with its own latency, and the client waits its Retry-After; a refusal
    without Retry-After is an error, and every 5xx shows in server_errors."""
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from serving.load import LoadRequest, free_port, run_load

    calls = []
    app = FastAPI()

    @app.post("/v1/rerank")
    async def answer(body: dict):
        calls.append(time.perf_counter())
        if body["n"] == 1:
            return JSONResponse({"detail": "busy"}, status_code=429, headers={"Retry-After": "1"})
        if body["n"] == 2:
            return JSONResponse({"detail": "down"}, status_code=503)  # no Retry-After
        return {"results": [{"index": 0, "id": "a"}]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        requests = [LoadRequest("/v1/rerank", {"n": n, "candidates": [{"id": "a"}]},
                                lambda a: None if a["results"][0]["id"] == "a" else "wrong") for n in range(3)]
        stats = asyncio.run(run_load(f"http://127.0.0.1:{port}", requests, clients=1, seconds=1.5))
    finally:
        server.should_exit = True
        thread.join(10)
    assert stats["status"]["429"] >= 1 and stats["refused"] == stats["status"]["429"] + stats["status"]["503"]
    assert stats["server_errors"] == stats["status"]["503"] >= 1 and stats["errors"] == stats["status"]["503"]
    assert stats["refused_p99_ms"] < 1000 and stats["mean_retry_after_s"] == 1.0
    assert len(calls) <= 6  # one client, a 1 s Retry-After honoured: a handful of calls, not a busy loop
