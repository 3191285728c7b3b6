"""The HTTP service: FastAPI around a ``RerankEngine`` and the dataset's item catalogue.

Every valid request gets a permutation of its candidates: guided decoding limits the model to
the candidates, the parser repairs what remains, and a slow or failed engine yields the pre-rank
order with ``fallback: true``. Invalid requests get a 4xx naming what was wrong: 413 for a body over
the cap (counted as received, chunked or not) and for a prompt that would not fit the engine's
context with its answer; item text is stripped of the served tokenizer's markup before it reaches a
prompt. Load is bounded (``serving.limits.Admission``): past the bound a request gets 429 with
``Retry-After`` at once, not a fallback 30 s later. The model sees what it was trained on: the
history is cut to the run's ``max_history`` (most recent) and a K other than the trained one is
flagged, both said in the response. Prompt building runs in a thread, not on the event loop.
``/v1/recommend`` exists when the server has a ``Cascade`` (a run with a trained ranker):
retrieval -> ranker -> the same rerank path. With an ``emphasizer`` (a run with a trained HiLight
actor), ``/v1/rerank`` takes ``"emphasis": "hilight"``: the actor marks history spans, the prompt
carries them as emphasis tags, and the response lists them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Match

from gr2.engines.vllm_engine import BaseRerankEngine, PreparedPrompt, PromptTooLong, RerankOutcome
from gr2.rerank_data import ItemCatalog
from gr2.rerank_format import Emphasis, ParsedAnswer, PromptItem, item_line
from serving.cascade import Cascade
from serving.limits import Admission, ASGIApp, BodyLimit, Message, Overloaded, Receive, Scope, Send, ServeLimits
from serving.schemas import (
    EmphasisSpan,
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

__all__ = ["ServeLimits", "TrainedShape", "create_app"]


@dataclass
class TrainedShape:
    """What the served model was trained on (the run's recipe): requests are cut or flagged to match."""

    max_history: int | None = None  # the recipe's max_history: the most recent items a prompt shows
    k: int | None = None  # the recipe's ranker.k: candidates per prompt


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gr2_requests", "HTTP requests by route template and status", ["endpoint", "status"],
                                registry=self.registry)
        self.fallbacks = Counter("gr2_fallbacks", "Answers that fell back to pre-rank order", ["reason"],
                                 registry=self.registry)
        self.repaired = Counter("gr2_repaired", "Answers the parser had to repair", registry=self.registry)
        self.latency = Histogram("gr2_rerank_seconds", "Rerank latency", registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
        self.rejected = Counter("gr2_rejected", "Requests refused for load (429 with Retry-After)",
                                ["endpoint", "reason"], registry=self.registry)
        self.in_flight = Gauge("gr2_in_flight", "Requests past admission (building prompts, generating)",
                               registry=self.registry)
        self.queued = Gauge("gr2_queued", "Requests waiting for admission", registry=self.registry)
        self.queue_wait = Histogram("gr2_queue_wait_seconds", "Time admitted requests waited in the queue",
                                    registry=self.registry, buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30))
        self.truncated = Counter("gr2_history_truncated", "Rerank requests whose history was cut to max_history",
                                 registry=self.registry)
        self.k_mismatch = Counter("gr2_k_mismatch", "Requests whose candidate count differs from the trained K",
                                  ["endpoint"], registry=self.registry)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The matched route's path template (``/v1/rerank``), never the raw path: a scan of random URLs
    must not mint one Prometheus series per URL."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
        if match == Match.PARTIAL and partial is None:
            partial = getattr(route, "path", None)
    return partial or "unmatched"


class RequestMetrics:
    """Pure ASGI middleware (outermost): counts every response, the body limit's 413s included, by route
    template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = "500"

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.requests.labels(route_template(self.routes, scope), status).inc()


# 400: a body that is not JSON at all; 404: unknown model or user; 413: body too large or a prompt over the
# engine's context; 422: invalid fields; 429: the server is at its load bound (Retry-After says when to retry).
ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 422, 429)}


def create_app(engine: BaseRerankEngine, catalog: ItemCatalog, model_name: str, limits: ServeLimits | None = None,
               start_engine: bool = True, cascade: Cascade | None = None,
               trained: TrainedShape | None = None,
               emphasizer: Callable[[list[PromptItem], list[PromptItem]], list] | None = None) -> FastAPI:
    """``emphasizer``: history and candidate items -> ``hilight.spans.Span`` list (``hilight.Emphasizer``)."""
    limits = limits or ServeLimits()
    trained = trained or TrainedShape()
    metrics = Metrics()
    admission = Admission(limits.max_in_flight, limits.max_queue, limits.max_queue_wait_s)
    metrics.in_flight.set_function(lambda: admission.in_flight)
    metrics.queued.set_function(lambda: admission.queued)
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
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.router.routes)  # outermost: sees the 413s

    def resolve(refs: list[ItemRef], field: str) -> tuple[list[int], list[PromptItem]]:
        """Catalogue indices and prompt items; titles stay raw here: the engine strips them of markup."""
        indices, items = [], []
        for n, ref in enumerate(refs):
            i = index_of.get(ref.id)
            if i is None:
                raise HTTPException(422, f"{field}[{n}]: unknown item id {ref.id[:64]!r} (not in the served catalogue)")
            if ref.title is not None and len(ref.title) > limits.max_text_chars:
                raise HTTPException(422, f"{field}[{n}].title: longer than {limits.max_text_chars} characters")
            indices.append(i)
            items.append(PromptItem(catalog.sids.sid(i), ref.title if ref.title is not None else catalog.titles[i]))
        return indices, items

    served = [model_name, *engine.adapters]

    def with_evidence(history: list[int], candidates: list[int], items: list[PromptItem]) -> list[PromptItem]:
        """The candidates with the evidence notes the model was trained with (recipe ``prompt_evidence``)."""
        if catalog.evidence is None or not items:
            return items
        return catalog.evidence.annotate(items, catalog.evidence.strengths_for(history, candidates))

    def adapter_for(name: str | None) -> str | None:
        """None for the base model, else the LoRA adapter the request names; anything else is a 404."""
        if name is None or name == model_name:
            return None
        if name in engine.adapters:
            return name
        raise HTTPException(404, f"model {name[:64]!r} is not served here; served: {served}")

    def k_warning(endpoint: str, k: int) -> str | None:
        if trained.k is None or k == trained.k:
            return None
        metrics.k_mismatch.labels(endpoint).inc()
        return (f"{k} candidates; the model was trained on {trained.k}, so its ranking of {k} is outside what it "
                f"learned and may be less reliable")

    @asynccontextmanager
    async def admitted(endpoint: str) -> AsyncIterator[None]:
        """A place in the bounded queue for the request's work, or 429 with Retry-After at once."""
        try:
            async with admission.slot() as waited:
                metrics.queue_wait.observe(waited)
                yield
        except Overloaded as exc:
            metrics.rejected.labels(endpoint, exc.reason).inc()
            raise HTTPException(429, exc.detail, headers={"Retry-After": str(exc.retry_after)}) from None

    async def run_engine(history: list[PromptItem], candidates: list[PromptItem], emphasize: Emphasis,
                         adapter: str | None) -> RerankOutcome:
        """The prompt, built and measured in a thread, then generation; 413 when the prompt and its answer
        would not fit the engine's context (the client's to fix: fewer or shorter items)."""
        try:
            prepared = await asyncio.to_thread(engine.prepare, history, candidates, emphasize)
        except PromptTooLong as exc:
            raise HTTPException(413, str(exc)) from None
        return await generate(prepared, adapter)

    async def generate(prepared: PreparedPrompt, adapter: str | None) -> RerankOutcome:
        start = time.perf_counter()
        outcome = await engine.generate(prepared, adapter=adapter)
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
        if body.emphasis == "hilight" and emphasizer is None:
            raise HTTPException(422, "emphasis: this server has no HiLight actor (train one with `gr2 hilight train "
                                     "--run RUN` and restart the server)")
        if body.emphasis == "hilight" and body.emphasize_history:
            raise HTTPException(422, "give emphasize_history or emphasis 'hilight', not both")
        history_indices, history = resolve(body.history, "history")
        candidate_indices, candidates = resolve(body.candidates, "candidates")
        warnings: list[str] = []
        # the model saw at most max_history items (the most recent) in training: show it no more
        dropped = max(0, len(history) - trained.max_history) if trained.max_history is not None else 0
        emphasize = [p - dropped for p in body.emphasize_history if p >= dropped]
        if dropped:
            metrics.truncated.inc()
            history, history_indices = history[dropped:], history_indices[dropped:]
            warnings.append(f"history: the model was trained on the {trained.max_history} most recent items; the "
                            f"{dropped} oldest of {len(body.history)} were left out")
            lost = sorted({p for p in body.emphasize_history if p < dropped})
            if lost:
                warnings.append(f"emphasize_history: positions {lost[:5]} were in the left-out part and are ignored")
        candidates = with_evidence(history_indices, candidate_indices, candidates)
        k = len(candidates)
        if (note := k_warning("/v1/rerank", k)) is not None:
            warnings.append(note)
        spans = None
        async with admitted("/v1/rerank"):
            if body.emphasis == "hilight":  # on the items as the model sees them: cut, stripped of markup
                spans = await asyncio.to_thread(emphasizer, [engine.clean_item(i) for i in history],
                                                [engine.clean_item(i) for i in candidates])
                emphasize = {}
                for span in spans:
                    emphasize.setdefault(span.item, []).append((span.start, span.end))
            outcome = await run_engine(history, candidates, emphasize, adapter)
        shown = None
        if spans is not None:
            lines = [item_line(engine.clean_item(i)) for i in history]
            shown = [EmphasisSpan(history_index=s.item + dropped, id=body.history[s.item + dropped].id, start=s.start,
                                  end=s.end, text=lines[s.item][s.start:s.end]) for s in spans]
        order = outcome.answer.order[: body.top_n] if body.top_n else outcome.answer.order
        results = [RerankResult(index=i, id=ids[i], relevance_score=round(1 - rank / k, 6))
                   for rank, i in enumerate(order)]
        return RerankResponse(
            id=f"rerank-{uuid.uuid4().hex}", model=adapter or model_name, results=results,
            reasoning=outcome.answer.reasoning if body.return_reasoning else None,
            repaired=outcome.answer.repaired, fallback=outcome.fallback, fallback_reason=outcome.fallback_reason,
            usage=usage(outcome), history_used=len(history), history_truncated=bool(dropped),
            trained_k=trained.k, k_differs=trained.k is not None and k != trained.k, warnings=warnings,
            emphasis_spans=shown,
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
                shown = [PromptItem(catalog.sids.sid(i), catalog.titles[i]) for i in recent]
            else:
                if not body.history:
                    raise HTTPException(422, "history: give at least one item")
                if len(body.history) > limits.max_history:
                    raise HTTPException(422, f"history: at most {limits.max_history} items, got {len(body.history)}")
                indices, items = resolve(body.history, "history")
                history = np.asarray(indices, dtype=np.int64)
                shown = items[-cascade.settings.max_history:]
            warnings = [note] if (note := k_warning("/v1/recommend", k)) is not None else []
            async with admitted("/v1/recommend"):  # retrieval and SASRec are work too
                pool = await asyncio.to_thread(cascade.candidates, history, k)
                candidates = with_evidence(history[-cascade.settings.max_history:].tolist(), list(pool.items),
                                           [PromptItem(catalog.sids.sid(i), catalog.titles[i]) for i in pool.items])
                if candidates:
                    outcome = await run_engine(shown, candidates, [], adapter)
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
                fallback_reason=outcome.fallback_reason, usage=usage(outcome), warnings=warnings,
            )

    @app.get("/healthz")
    async def healthz():
        try:
            await engine.check_health()
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            return JSONResponse({"status": "unhealthy", "detail": str(exc)[:200]}, status_code=503)
        return {"status": "ok", "model": model_name, "adapters": engine.adapters, "backend": engine.backend,
                "items": len(catalog.titles), "recommend": cascade is not None, "hilight": emphasizer is not None,
                "trained": {"max_history": trained.max_history, "k": trained.k},
                "load": {"in_flight": admission.in_flight, "queued": admission.queued,
                         "max_in_flight": limits.max_in_flight, "max_queue": limits.max_queue}, **engine.stats()}

    @app.get("/metrics")
    async def prometheus_metrics():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
