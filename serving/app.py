"""The HTTP service: FastAPI around a ``RerankEngine`` and the dataset's item catalogue.

Every valid request gets a permutation of its candidates: guided decoding limits the model to
the candidates, the parser repairs what remains, and a slow or failed engine yields the pre-rank
order with ``fallback: true``. Invalid requests get a 4xx naming what was wrong; item text is
stripped of special tokens before it reaches a prompt. ``/v1/recommend`` exists when the server has
a ``Cascade`` (a run with a trained ranker): retrieval -> ranker -> the same rerank path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gr2.engines.vllm_engine import BaseRerankEngine, RerankOutcome
from gr2.rerank_data import ItemCatalog
from gr2.rerank_format import ParsedAnswer, PromptItem, sanitize_item_text
from serving.cascade import Cascade
from serving.schemas import (
    ErrorBody,
    ItemRef,
    Recommendation,
    RecommendRequest,
    RecommendResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
    Usage,
)


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


# 400: a body that is not JSON at all; 404: unknown model or user; 413: body too large; 422: invalid fields.
ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 422)}


def create_app(engine: BaseRerankEngine, catalog: ItemCatalog, model_name: str, limits: ServeLimits | None = None,
               start_engine: bool = True, cascade: Cascade | None = None) -> FastAPI:
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

    def resolve(refs: list[ItemRef], field: str) -> tuple[list[int], list[PromptItem]]:
        indices, items = [], []
        for n, ref in enumerate(refs):
            i = index_of.get(ref.id)
            if i is None:
                raise HTTPException(422, f"{field}[{n}]: unknown item id {ref.id[:64]!r} (not in the served catalogue)")
            if ref.title is not None and len(ref.title) > limits.max_text_chars:
                raise HTTPException(422, f"{field}[{n}].title: longer than {limits.max_text_chars} characters")
            title = sanitize_item_text(ref.title if ref.title is not None else catalog.titles[i])
            indices.append(i)
            items.append(PromptItem(catalog.sids.sid(i), title))
        return indices, items

    served = [model_name, *engine.adapters]

    def adapter_for(name: str | None) -> str | None:
        """None for the base model, else the LoRA adapter the request names; anything else is a 404."""
        if name is None or name == model_name:
            return None
        if name in engine.adapters:
            return name
        raise HTTPException(404, f"model {name[:64]!r} is not served here; served: {served}")

    async def generate(history: list[PromptItem], candidates: list[PromptItem], emphasize: list[int],
                       adapter: str | None) -> RerankOutcome:
        start = time.perf_counter()
        outcome = await engine.rerank(history, candidates, emphasize, adapter=adapter)
        metrics.latency.observe(time.perf_counter() - start)
        if outcome.fallback:
            metrics.fallbacks.labels(outcome.fallback_reason or "unknown").inc()
        if outcome.answer.repaired:
            metrics.repaired.inc()
        return outcome

    def usage(outcome: RerankOutcome) -> Usage:
        return Usage(prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
                     total_tokens=outcome.prompt_tokens + outcome.completion_tokens)

    @app.post("/v1/rerank", response_model=RerankResponse, responses=ERRORS)
    async def rerank(body: RerankRequest) -> RerankResponse:
        adapter = adapter_for(body.model)
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
        _, history = resolve(body.history, "history")
        _, candidates = resolve(body.candidates, "candidates")
        outcome = await generate(history, candidates, body.emphasize_history, adapter)
        k = len(candidates)
        order = outcome.answer.order[: body.top_n] if body.top_n else outcome.answer.order
        results = [RerankResult(index=i, id=ids[i], relevance_score=round(1 - rank / k, 6))
                   for rank, i in enumerate(order)]
        return RerankResponse(
            id=f"rerank-{uuid.uuid4().hex}", model=adapter or model_name, results=results,
            reasoning=outcome.answer.reasoning if body.return_reasoning else None,
            repaired=outcome.answer.repaired, fallback=outcome.fallback, fallback_reason=outcome.fallback_reason,
            usage=usage(outcome),
        )

    if cascade is not None:
        @app.post("/v1/recommend", response_model=RecommendResponse, responses=ERRORS)
        async def recommend(body: RecommendRequest) -> RecommendResponse:
            """User id or history -> retrieval -> ranker -> GR2 rerank of the ranker's top K -> top_n."""
            import numpy as np

            adapter = adapter_for(body.model)
            if (body.user_id is None) == (body.history is None):
                raise HTTPException(422, "give exactly one of user_id and history")
            k = body.k or cascade.settings.k
            if k > limits.max_candidates:
                raise HTTPException(422, f"k: at most {limits.max_candidates}, got {k}")
            if body.top_n > k:
                raise HTTPException(422, f"top_n ({body.top_n}) cannot exceed k ({k}), the candidates reranked")
            if body.user_id is not None:
                history = cascade.history_of(body.user_id)
                if history is None:
                    raise HTTPException(404, f"unknown user_id {body.user_id[:64]!r} (not a user of {cascade.ds.name})")
                recent = history[-cascade.settings.max_history:].tolist()
                shown = [PromptItem(catalog.sids.sid(i), sanitize_item_text(catalog.titles[i])) for i in recent]
            else:
                if not body.history:
                    raise HTTPException(422, "history: give at least one item")
                if len(body.history) > limits.max_history:
                    raise HTTPException(422, f"history: at most {limits.max_history} items, got {len(body.history)}")
                indices, items = resolve(body.history, "history")
                history = np.asarray(indices, dtype=np.int64)
                shown = items[-cascade.settings.max_history:]
            pool = await asyncio.to_thread(cascade.candidates, history, k)
            candidates = [PromptItem(catalog.sids.sid(i), sanitize_item_text(catalog.titles[i])) for i in pool.items]
            if candidates:
                outcome = await generate(shown, candidates, [], adapter)
            else:  # the user has seen every retrieved item: nothing to recommend, nothing to generate
                outcome = RerankOutcome(ParsedAnswer([], valid=True))
            n = len(candidates)
            results = [Recommendation(id=catalog.item_ids[pool.items[i]], title=catalog.titles[pool.items[i]],
                                      relevance_score=round(1 - rank / n, 6), pre_rank=i,
                                      ranker_score=round(pool.scores[i], 6))
                       for rank, i in enumerate(outcome.answer.order[: body.top_n])]
            return RecommendResponse(
                id=f"recommend-{uuid.uuid4().hex}", model=adapter or model_name, user_id=body.user_id,
                results=results, candidates=[catalog.item_ids[i] for i in pool.items], retrieved=pool.retrieved,
                reasoning=outcome.answer.reasoning if body.return_reasoning else None,
                repaired=outcome.answer.repaired, fallback=outcome.fallback,
                fallback_reason=outcome.fallback_reason, usage=usage(outcome),
            )

    @app.get("/healthz")
    async def healthz():
        try:
            await engine.check_health()
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            return JSONResponse({"status": "unhealthy", "detail": str(exc)[:200]}, status_code=503)
        return {"status": "ok", "model": model_name, "adapters": engine.adapters, "backend": engine.backend,
                "items": len(catalog.titles), "recommend": cascade is not None, **engine.stats()}

    @app.get("/metrics")
    async def prometheus_metrics():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
