"""Request and response bodies of the HTTP API (Cohere / vLLM rerank shape plus GR2's fields).

Static caps here reject absurd bodies during parsing; the configurable limits (``ServeLimits``)
are checked in the handlers so each gets its own 4xx message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HARD_MAX_ITEMS = 1000
HARD_MAX_TEXT = 10_000


class ItemRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=256, description="Item id as in the served dataset.")
    title: str | None = Field(None, max_length=HARD_MAX_TEXT,
                              description="Text to show instead of the catalogue title (treated as data).")


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, max_length=256,
                              description="The served model's name or a served LoRA adapter's (default: the model).")
    history: list[ItemRef] = Field(default_factory=list, max_length=HARD_MAX_ITEMS,
                                   description="The user's items, oldest first.")
    candidates: list[ItemRef] = Field(..., min_length=1, max_length=HARD_MAX_ITEMS,
                                      description="Items to rerank, in the pre-ranker's order.")
    top_n: int | None = Field(None, ge=1, le=HARD_MAX_ITEMS)
    return_reasoning: bool = False
    emphasize_history: list[int] = Field(default_factory=list, max_length=HARD_MAX_ITEMS,
                                         description="History positions to wrap in emphasis tags (HiLight).")
    emphasis: Literal["none", "hilight"] = Field(
        "none", description="hilight: the run's trained HiLight actor picks the history spans to emphasise before "
                            "the model ranks (returned in emphasis_spans); instead of emphasize_history.")


class RerankResult(BaseModel):
    index: int = Field(..., description="Position of the candidate in the request.")
    id: str
    relevance_score: float = Field(..., description="1 for the top result, decreasing linearly with rank.")


class EmphasisSpan(BaseModel):
    history_index: int = Field(..., description="Position of the item in the request's history.")
    id: str
    start: int = Field(..., description="First character of the span in the item's prompt line (SID and title).")
    end: int = Field(..., description="One past its last character.")
    text: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    reasoning: str | None = None
    repaired: bool
    fallback: bool
    fallback_reason: str | None = None
    usage: Usage
    history_used: int = Field(..., description="History items the model saw: the most recent ones, at most the "
                                               "max_history it was trained with.")
    history_truncated: bool = Field(False, description="The request's history was longer than the model's "
                                                       "max_history; its oldest items were left out.")
    trained_k: int | None = Field(None, description="The number of candidates the model was trained to rank.")
    k_differs: bool = Field(False, description="The request's candidate count differs from trained_k: allowed, "
                                               "but outside what the model learned.")
    warnings: list[str] = Field(default_factory=list,
                                description="What the server changed or would have you know (truncation, K).")
    emphasis_spans: list[EmphasisSpan] | None = Field(None, description="With emphasis 'hilight': the history spans "
                                                                        "the actor emphasised.")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, max_length=256,
                              description="The served model's name or a served LoRA adapter's (default: the model).")
    user_id: str | None = Field(None, min_length=1, max_length=256,
                                description="A user of the served dataset; their whole history is used.")
    history: list[ItemRef] | None = Field(None, max_length=HARD_MAX_ITEMS,
                                          description="Instead of user_id: the items a user interacted with, "
                                                      "oldest first.")
    top_n: int = Field(10, ge=1, le=HARD_MAX_ITEMS, description="Recommendations to return (at most k).")
    k: int | None = Field(None, ge=1, le=HARD_MAX_ITEMS,
                          description="Candidates the reranker reorders (default: the K it was trained on).")
    return_reasoning: bool = False


class Recommendation(BaseModel):
    id: str
    title: str
    relevance_score: float = Field(..., description="1 for the top result, decreasing linearly with rank.")
    pre_rank: int = Field(..., description="0-based position in the ranker's order, before reranking.")
    ranker_score: float


class RecommendResponse(BaseModel):
    id: str
    model: str
    user_id: str | None = None
    results: list[Recommendation]
    candidates: list[str] = Field(..., description="The ranker's top-K item ids, in its order (the rerank input).")
    retrieved: int = Field(..., description="Items the retriever handed to the ranker.")
    reasoning: str | None = None
    repaired: bool
    fallback: bool
    fallback_reason: str | None = None
    usage: Usage
    warnings: list[str] = Field(default_factory=list, description="E.g. a k other than the trained K.")


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        ..., description="What was wrong: a message, or for a body that does not fit the schema, the validator's "
                         "list of errors (each with loc, msg, type).")
