"""Overload and oversize over real loopback TCP, on the session's vLLM engine behind a tightly bounded app.

The app admits one request at a time with one waiting: of eight concurrent requests, the one in
flight and the one queued get permutations, the rest get 429 with Retry-After at once (not a
fallback after the engine's deadline), and /metrics counts them. A chunked upload (no
Content-Length) over the body cap gets 413 as a declared one does.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.serving.conftest import loopback


@pytest.fixture(scope="module")
def tight_url(served, ml100k_catalog):
    from serving.app import ServeLimits, TrainedShape, create_app

    client, engine = served
    app = create_app(engine, ml100k_catalog, "tiny-tight", start_engine=False, trained=TrainedShape(5, 10),
                     limits=ServeLimits(max_candidates=20, max_history=20, max_body_bytes=4096, max_in_flight=1,
                                        max_queue=1, max_queue_wait_s=60))
    with loopback(client, app) as url:
        yield url


def payload(catalog, n: int) -> dict:
    return {"history": [{"id": catalog.item_ids[n]}],
            "candidates": [{"id": catalog.item_ids[i]} for i in range(100 + 10 * n, 110 + 10 * n)]}


def test_overload_gets_429_with_retry_after_at_once(tight_url, ml100k_catalog):
    import httpx

    async def burst():
        async with httpx.AsyncClient(base_url=tight_url, timeout=120) as http:
            async def one(n: int):
                start = time.perf_counter()
                r = await http.post("/v1/rerank", json=payload(ml100k_catalog, n))
                return r, time.perf_counter() - start

            return await asyncio.gather(*(one(n) for n in range(8)))

    answers = asyncio.run(burst())
    ok = [(r, s) for r, s in answers if r.status_code == 200]
    refused = [(r, s) for r, s in answers if r.status_code == 429]
    assert len(ok) + len(refused) == 8 and len(ok) >= 2 and len(refused) >= 4, [r.status_code for r, _ in answers]
    for r, _ in ok:
        assert sorted(x["index"] for x in r.json()["results"]) == list(range(10)) and not r.json()["fallback"]
    for r, seconds in refused:
        assert int(r.headers["retry-after"]) >= 1 and "server busy" in r.json()["detail"]
        assert seconds < 1.0  # refused at once, not after a wait
    assert max(s for _, s in refused) < min(s for _, s in ok)
    metrics = httpx.get(f"{tight_url}/metrics").text
    assert f'gr2_rejected_total{{endpoint="/v1/rerank",reason="queue_full"}} {float(len(refused))}' in metrics
    assert f'gr2_requests_total{{endpoint="/v1/rerank",status="429"}} {float(len(refused))}' in metrics
    assert "gr2_in_flight 0.0" in metrics and "gr2_queued 0.0" in metrics
    health = httpx.get(f"{tight_url}/healthz").json()
    assert health["load"]["max_in_flight"] == 1 and health["trained"] == {"max_history": 5, "k": 10}


def test_chunked_upload_over_the_cap_gets_413(tight_url, ml100k_catalog):
    """Over TCP with Transfer-Encoding: chunked, as a client streaming its body sends it."""
    import json

    import httpx

    def chunked(data: bytes, size: int = 512):
        for i in range(0, len(data), size):
            yield data[i:i + size]

    big = json.dumps({**payload(ml100k_catalog, 1), "candidates": [{"id": "1", "title": "y" * 400}] * 12}).encode()
    r = httpx.post(f"{tight_url}/v1/rerank", content=chunked(big), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over 4096 bytes" in r.text
    small = json.dumps(payload(ml100k_catalog, 2)).encode()
    r = httpx.post(f"{tight_url}/v1/rerank", content=chunked(small, 64), headers={"content-type": "application/json"},
                   timeout=120)
    assert r.status_code == 200, r.text  # under the cap, the streamed body reaches the app whole
    assert 'gr2_requests_total{endpoint="/v1/rerank",status="413"} 1.0' in httpx.get(f"{tight_url}/metrics").text
