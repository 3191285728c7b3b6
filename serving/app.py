"""The HTTP service: FastAPI around a ``RerankEngine`` and the dataset's item catalogue.

Every valid request gets a permutation of its candidates: guided decoding limits the model to
the candidates, the parser repairs what remains, and a slow or failed engine yields the pre-rank
order with ``fallback: true``. Invalid requests get a 4xx naming what was wrong; item text is
stripped of special tokens before it reaches a prompt.
"""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gr2.rerank_data import ItemCatalog
from gr2.rerank_format import PromptItem, sanitize_item_text
from serving.engine import RerankEngine
from serving.schemas import ErrorBody, ItemRef, RerankRequest, RerankResponse, RerankResult, Usage


@dataclass
class ServeLimits:
    max_candidates: int = 50
    max_history: int = 50
    max_text_chars: int = 500  # per title given in a request
    max_body_bytes: int = 256 * 1024


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gr2_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.fallbacks = Counter("gr2_fallbacks", "Answers that fell back to pre-rank order", ["reason"],
                                 registry=self.registry)
        self.repaired = Counter("gr2_repaired", "Answers the parser had to repair", registry=self.registry)
        self.latency = Histogram("gr2_rerank_seconds", "Rerank latency", registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))


def create_app(engine: RerankEngine, catalog: ItemCatalog, model_name: str, limits: ServeLimits | None = None,
               start_engine: bool = True) -> FastAPI:
    limits = limits or ServeLimits()
    metrics = Metrics()
    index_of = {item_id: i for i, item_id in enumerate(catalog.item_ids)}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_engine and engine.engine is None:
            engine.start()
        yield
        if start_engine:
            engine.shutdown()

    app = FastAPI(title="GR2 reranking service", version="0.1.0", lifespan=lifespan,
                  description="LLM generative reranking over semantic IDs (see DESIGN.md, 'Serving').")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
            metrics.requests.labels(request.url.path, "413").inc()
            return JSONResponse({"detail": f"request body over {limits.max_body_bytes} bytes"}, status_code=413)
        response = await call_next(request)
        metrics.requests.labels(request.url.path, str(response.status_code)).inc()
        return response

    def resolve(refs: list[ItemRef], field: str) -> list[PromptItem]:
        items = []
        for n, ref in enumerate(refs):
            i = index_of.get(ref.id)
            if i is None:
                raise HTTPException(422, f"{field}[{n}]: unknown item id {ref.id[:64]!r} (not in the served catalogue)")
            if ref.title is not None and len(ref.title) > limits.max_text_chars:
                raise HTTPException(422, f"{field}[{n}].title: longer than {limits.max_text_chars} characters")
            title = sanitize_item_text(ref.title if ref.title is not None else catalog.titles[i])
            items.append(PromptItem(catalog.sids.sid(i), title))
        return items

    @app.post("/v1/rerank", response_model=RerankResponse,
              responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}})
    async def rerank(body: RerankRequest) -> RerankResponse:
        if len(body.candidates) > limits.max_candidates:
            raise HTTPException(422, f"candidates: at most {limits.max_candidates}, got {len(body.candidates)}")
        if len(body.history) > limits.max_history:
            raise HTTPException(422, f"history: at most {limits.max_history} items, got {len(body.history)}")
        ids = [c.id for c in body.candidates]
        if len(set(ids)) != len(ids):
            raise HTTPException(422, "candidates: the same item id appears more than once")
        bad = [p for p in body.emphasize_history if not 0 <= p < len(body.history)]
        if bad:
            raise HTTPException(422, f"emphasize_history: positions {bad[:5]} are not history positions")
        history, candidates = resolve(body.history, "history"), resolve(body.candidates, "candidates")
        start = time.perf_counter()
        outcome = await engine.rerank(history, candidates, body.emphasize_history)
        metrics.latency.observe(time.perf_counter() - start)
        if outcome.fallback:
            metrics.fallbacks.labels(outcome.fallback_reason or "unknown").inc()
        if outcome.answer.repaired:
            metrics.repaired.inc()
        k = len(candidates)
        order = outcome.answer.order[: body.top_n] if body.top_n else outcome.answer.order
        results = [RerankResult(index=i, id=ids[i], relevance_score=round(1 - rank / k, 6))
                   for rank, i in enumerate(order)]
        return RerankResponse(
            id=f"rerank-{uuid.uuid4().hex}", model=model_name, results=results,
            reasoning=outcome.answer.reasoning if body.return_reasoning else None,
            repaired=outcome.answer.repaired, fallback=outcome.fallback, fallback_reason=outcome.fallback_reason,
            usage=Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
                        total_tokens=outcome.prompt_tokens + outcome.completion_tokens),
        )

    @app.get("/healthz")
    async def healthz():
        try:
            await engine.check_health()
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            return JSONResponse({"status": "unhealthy", "detail": str(exc)[:200]}, status_code=503)
        return {"status": "ok", "model": model_name, "items": len(catalog.titles)}

    @app.get("/metrics")
    async def prometheus_metrics():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
