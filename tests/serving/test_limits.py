"""The load bound and the body cap on their own (no engine): what ``serving.limits`` promises.

The same code under the real vLLM engine is exercised in ``test_overload.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from serving.limits import Admission, BodyLimit, Overloaded


def test_admission_bounds_in_flight_and_queue_and_refuses_at_once():
    async def scenario():
        gate = Admission(max_in_flight=2, max_queue=2, max_queue_wait_s=5)
        release = asyncio.Event()
        order: list[int] = []

        async def request(n: int) -> str:
            try:
                async with gate.slot():
                    order.append(n)
                    await release.wait()
                return "ok"
            except Overloaded as exc:
                return f"{exc.reason} {exc.retry_after}"

        tasks = [asyncio.create_task(request(n)) for n in range(6)]
        await asyncio.sleep(0.05)
        assert gate.in_flight == 2 and gate.queued == 2 and order == [0, 1]
        refused = [t for t in tasks if t.done()]  # the two beyond the queue, refused without waiting
        assert [t.result().split()[0] for t in refused] == ["queue_full", "queue_full"]
        assert all(int(t.result().split()[1]) >= 1 for t in refused)
        release.set()
        results = await asyncio.gather(*tasks)
        assert results.count("ok") == 4 and order == [0, 1, 2, 3]  # queued ones admitted first come, first served
        assert gate.in_flight == 0 and gate.queued == 0

    asyncio.run(scenario())


def test_queue_wait_is_bounded_and_cancelled_waiters_leak_no_place():
    async def scenario():
        gate = Admission(max_in_flight=1, max_queue=4, max_queue_wait_s=0.05)
        hold = asyncio.Event()

        async def holder():
            async with gate.slot():
                await hold.wait()

        first = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        with pytest.raises(Overloaded) as info:
            async with gate.slot():
                pass
        assert info.value.reason == "queue_timeout" and time.perf_counter() - start < 1
        waiter = asyncio.create_task(holder())  # queued, then its client goes away
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        hold.set()
        await first
        assert gate.in_flight == 0 and gate.queued == 0
        async with gate.slot():  # the place is free again
            assert gate.in_flight == 1

    asyncio.run(scenario())


def body_app(max_bytes: int) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    return app


def test_body_cap_holds_for_chunked_uploads():
    """No Content-Length (a chunked upload) no longer skips the cap; bodies under it reach the app whole."""
    client = TestClient(body_app(1000))

    def chunks(n: int, size: int = 100):
        for _ in range(n):
            yield b"x" * size

    r = client.post("/echo", content=chunks(30))
    assert r.status_code == 413 and "over 1000 bytes" in r.text
    assert client.post("/echo", content=chunks(9)).json() == {"bytes": 900}
    assert client.post("/echo", content=b"y" * 2000).status_code == 413  # declared length, refused unread
    assert client.post("/echo", content=b"y" * 1000).json() == {"bytes": 1000}
