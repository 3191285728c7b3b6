"""The frozen solver: whatever answers the (emphasised) rerank prompt; only its answer is used.

Two kinds behind one interface (``Solver.answer``: conversations and candidate SIDs in, parsed
answers out): a GR2 reranker decoded as served (offline vLLM, greedy, under the permutation
constraint; or ``transformers`` generate, the same constraint, for small tests) and any
OpenAI-compatible chat endpoint at temperature 0. Decoding is greedy so that a reward says what
the emphasis did, not what the sampler drew; ``CachedSolver`` exploits that: the same prompt is
answered once (GRPO's masks often coincide, and every method shares the unemphasised prompt).

Reward: 0.7 * HR@5 + 0.3 * NDCG@5 of where the solver put the target; 0 when its answer could not be
parsed at all (a fallback to the pre-rank order is not the solver's ranking).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from evals.metrics import hit_rate_at_k, ndcg_gains
from gr2.rerank_data import ItemCatalog
from gr2.rerank_format import ParsedAnswer, parse_answer
from gr2.reranker import GenerationSettings
from hilight.config import SolverConfig

Conversation = list[dict[str, str]]


class Solver(Protocol):
    name: str

    def answer(self, conversations: Sequence[Conversation], candidate_sids: Sequence[Sequence[str]],
               progress: bool = False) -> list[ParsedAnswer]:
        """One greedy answer per conversation, parsed against its candidates."""
        ...

    def close(self) -> None: ...


def solver_reward(answer: ParsedAnswer, target_index: int | None) -> float:
    """0.7 * HR@5 + 0.3 * NDCG@5 of the target in the solver's order; 0 if unparseable or no target."""
    if answer.fallback or target_index is None:
        return 0.0
    rank = np.array([answer.order.index(target_index) + 1])
    return 0.7 * hit_rate_at_k(rank, 5) + 0.3 * float(ndcg_gains(rank, 5)[0])


class GR2Solver:
    """A GR2 reranker checkpoint, decoded exactly as ``gr2 eval rerank`` decodes (``load_reranker``)."""

    def __init__(self, model_dir: str | Path, catalog: ItemCatalog, settings: GenerationSettings):
        from gr2.reranker import load_reranker

        self.model_dir = Path(model_dir)
        self.name = f"gr2:{self.model_dir}"
        self.reranker = load_reranker(self.model_dir, catalog, settings)

    def answer(self, conversations: Sequence[Conversation], candidate_sids: Sequence[Sequence[str]],
               progress: bool = False) -> list[ParsedAnswer]:
        texts = self.reranker.generate(list(conversations), progress=progress,
                                       candidate_sids=[list(c) for c in candidate_sids])
        return [parse_answer(t, c) for t, c in zip(texts, candidate_sids, strict=True)]

    def close(self) -> None:
        self.reranker.close()


class OpenAISolver:
    """Any OpenAI-compatible chat endpoint (a ``vllm serve``, a hosted model) at temperature 0."""

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, max_tokens: int = 512,
                 timeout_s: float = 120.0, concurrency: int = 8):
        from openai import OpenAI

        self.name = f"openai:{model}@{endpoint}"
        self.model, self.max_tokens, self.concurrency = model, max_tokens, concurrency
        self.client = OpenAI(base_url=endpoint, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=2)

    def _one(self, conversation: Conversation) -> str:
        from gr2.teachers.base import join_reasoning

        response = self.client.chat.completions.create(model=self.model, messages=conversation, temperature=0.0,
                                                       max_tokens=self.max_tokens, seed=0)
        message = response.choices[0].message
        return join_reasoning(message.content, getattr(message, "reasoning_content", None)
                              or getattr(message, "reasoning", None))

    def answer(self, conversations: Sequence[Conversation], candidate_sids: Sequence[Sequence[str]],
               progress: bool = False) -> list[ParsedAnswer]:
        from tqdm.auto import tqdm

        with ThreadPoolExecutor(self.concurrency) as pool:
            texts = list(tqdm(pool.map(self._one, conversations), total=len(conversations), desc="solver",
                              unit="prompt", disable=not progress))
        return [parse_answer(t, c) for t, c in zip(texts, candidate_sids, strict=True)]

    def close(self) -> None:
        self.client.close()


class CachedSolver:
    """Answers each distinct prompt once (greedy decoding: the same prompt, the same answer), in batches."""

    def __init__(self, solver: Solver):
        self.solver = solver
        self.name = solver.name
        self.cache: dict[str, ParsedAnswer] = {}
        self.calls = 0  # prompts actually sent to the solver

    @staticmethod
    def key(conversation: Conversation, candidate_sids: Sequence[str]) -> str:
        payload = json.dumps([conversation, list(candidate_sids)], ensure_ascii=False)
        return hashlib.sha1(payload.encode()).hexdigest()

    def answer(self, conversations: Sequence[Conversation], candidate_sids: Sequence[Sequence[str]],
               progress: bool = False) -> list[ParsedAnswer]:
        keys = [self.key(c, s) for c, s in zip(conversations, candidate_sids, strict=True)]
        todo = {k: n for n, k in reversed(list(enumerate(keys))) if k not in self.cache}
        if todo:
            rows = sorted(todo.values())
            answers = self.solver.answer([conversations[n] for n in rows], [candidate_sids[n] for n in rows],
                                         progress=progress)
            self.calls += len(rows)
            self.cache.update(zip((keys[n] for n in rows), answers, strict=True))
        return [self.cache[k] for k in keys]

    def close(self) -> None:
        self.solver.close()


def resolve_model(run: Path, model: str) -> Path:
    """A stage name of the run (``sft`` -> RUN/sft/model) or a model directory."""
    for path in (run / model / "model", Path(model).expanduser()):
        if (path / "config.json").is_file():
            return path
    raise FileNotFoundError(f"no model for {model!r}: neither {run / model / 'model'} nor {model} holds a config.json")


def build_solver(config: SolverConfig, catalog: ItemCatalog, run: Path) -> CachedSolver:
    if config.kind == "openai":
        if not config.endpoint:
            raise ValueError("hilight.solver.kind 'openai' needs hilight.solver.endpoint")
        return CachedSolver(OpenAISolver(config.endpoint, config.model, os.environ.get(config.api_key_env),
                                         config.max_tokens, config.timeout_s, config.concurrency))
    return CachedSolver(GR2Solver(resolve_model(run, config.model), catalog, config.generation))
