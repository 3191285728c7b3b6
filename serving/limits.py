"""What the server refuses, and how: request size and load.

``BodyLimit`` enforces the body cap on the bytes actually received, so a chunked upload (no
``Content-Length``) cannot slip past it. ``Admission`` bounds the work in the server: at most
``max_in_flight`` requests past admission (prompt building and generation) and ``max_queue``
waiting for one of those places, each for at most ``max_queue_wait_s``. A request that finds the
queue full is refused at once with 429 and a ``Retry-After``; one whose wait runs out, with 429
too. Without the bound, overload shows as every request waiting out the engine's deadline and
coming back as a pre-rank fallback, much later.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class ServeLimits:
    max_candidates: int = 50
    max_history: int = 50  # items a request may send (the model sees its trained max_history of them)
    max_text_chars: int = 500  # per title given in a request
    max_body_bytes: int = 256 * 1024
    max_in_flight: int = 64  # requests past admission: building prompts and generating
    max_queue: int = 256  # requests waiting for one of those places; beyond it: 429 at once
    max_queue_wait_s: float = 10.0  # a queued request's longest wait; then 429


async def send_json(send: Send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Pure ASGI middleware: a body over ``max_bytes`` gets 413, whether it declares its length or not.

    A declared ``Content-Length`` over the cap is refused before reading; otherwise the body is read
    (counting bytes as they arrive, stopping at the cap) and replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await send_json(send, 413, {"detail": f"request body over {self.max_bytes} bytes"},
                        {"connection": "close"})


class Overloaded(Exception):
    """No place for the request now; ``retry_after`` (whole seconds) is when one is likely."""

    def __init__(self, reason: str, detail: str, retry_after: int):
        super().__init__(detail)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class Admission:
    """A bounded queue in front of the engine (one event loop; no locks needed).

    ``slot()`` admits at once while fewer than ``max_in_flight`` hold a place; otherwise it queues, first
    come first served, unless ``max_queue`` already wait (``Overloaded("queue_full")`` at once) or the
    wait passes ``max_queue_wait_s`` (``Overloaded("queue_timeout")``). A finished request hands its
    place straight to the oldest waiter. ``Retry-After`` is estimated from the recent time a place is
    held and the requests ahead."""

    def __init__(self, max_in_flight: int, max_queue: int, max_queue_wait_s: float):
        if max_in_flight < 1 or max_queue < 0 or max_queue_wait_s < 0:
            raise ValueError("max_in_flight must be >= 1, max_queue and max_queue_wait_s >= 0")
        self.max_in_flight, self.max_queue, self.max_queue_wait_s = max_in_flight, max_queue, max_queue_wait_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future] = deque()
        self.hold_s = 1.0  # moving average of how long a request holds a place

    @property
    def queued(self) -> int:
        return sum(not w.done() for w in self._waiters)

    def retry_after(self) -> int:
        ahead = self.in_flight + self.queued
        return max(1, min(60, math.ceil(self.hold_s * ahead / self.max_in_flight)))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a place for the body of the ``async with``; yields the seconds spent queued."""
        start = time.perf_counter()
        if self.in_flight < self.max_in_flight and not self.queued:
            self.in_flight += 1
        elif self.queued >= self.max_queue:
            raise Overloaded("queue_full", f"server busy: {self.in_flight} requests in flight and {self.queued} "
                                           f"queued (the limits); retry later", self.retry_after())
        else:
            await self._wait()
        waited = time.perf_counter() - start
        held = time.perf_counter()
        try:
            yield waited
        finally:
            self.hold_s = 0.8 * self.hold_s + 0.2 * (time.perf_counter() - held)
            self._release()

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.max_queue_wait_s)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # the place was handed over as we gave up
                self._release()
            else:
                waiter.cancel()
            self._prune()
            if isinstance(exc, TimeoutError):
                raise Overloaded("queue_timeout", f"server busy: no place within {self.max_queue_wait_s:g} s "
                                                  f"in the queue; retry later", self.retry_after()) from None
            raise

    def _release(self) -> None:
        """Hand the place to the oldest live waiter (``in_flight`` unchanged), or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def _prune(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
