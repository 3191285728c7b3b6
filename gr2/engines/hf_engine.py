"""The same rerank engine interface on plain ``transformers`` generate: the benchmark's fair peer.

A single worker thread owns the model. Requests wait in a queue; whenever the worker is free it
takes every waiting request (up to ``max_batch``) and runs them as one left-padded ``generate``, so
concurrent clients are batched the way a careful hand-written server would batch them (static
batching: a batch runs to its longest answer and newcomers wait for the next one). Answers are
decoded under ``gr2.answer_constraint`` (exact permutations, as the vLLM engine's logits processor
does, each row's state kept between steps), except in the benchmark's ``exact_tokens`` mode, where
both engines generate unconstrained.

A request is one request's problem: a prompt that does not fit is refused before it is queued
(``PromptTooLong``), and a batch whose ``generate`` fails is retried one request at a time, so one
bad request falls back alone instead of taking its batch-mates with it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

from gr2.engines.vllm_engine import BaseRerankEngine, EngineSettings, PreparedPrompt, PromptTooLong, RerankOutcome
from gr2.rerank_format import parse_answer

log = logging.getLogger(__name__)


@dataclass
class _Job:
    prepared: PreparedPrompt
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class TransformersRerankEngine(BaseRerankEngine):
    backend = "transformers"

    def __init__(self, settings: EngineSettings, max_batch: int = 32):
        super().__init__(settings)
        self.max_batch = max_batch
        self.model = None
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.batch_sizes: list[int] = []  # what the worker actually batched (for the benchmark report)

    def start(self) -> TransformersRerankEngine:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.settings.lora_adapters:
            raise ValueError("LoRA adapters are served through vLLM only (--engine vllm)")
        self._set_tokenizer(AutoTokenizer.from_pretrained(self.settings.model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(self.settings.model_dir, dtype="float32").eval()
        self.engine = self.model
        self._worker = threading.Thread(target=self._loop, name="hf-generate", daemon=True)
        self._worker.start()
        return self

    def shutdown(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=60)
            self._worker = None
        self.engine = self.model = None

    async def check_health(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            raise RuntimeError("generation worker not running")

    async def generate(self, prepared: PreparedPrompt, timeout_s: float | None = None,
                       adapter: str | None = None) -> RerankOutcome:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        job = _Job(prepared, loop.create_future(), loop)
        self._queue.put(job)
        k = len(prepared.answer_keys)
        try:
            text, prompt_tokens, completion_tokens = await asyncio.wait_for(
                asyncio.shield(job.future), timeout=timeout_s or self.settings.timeout_s)
        except TimeoutError:  # the batch keeps running; its answer is dropped
            return self._fallback(k, "timeout", start)
        except Exception:  # noqa: BLE001 - a failed generate must become a fallback answer, not a 5xx
            log.exception("generate failed")
            return self._fallback(k, "engine error", start)
        answer = parse_answer(text, prepared.answer_keys)
        return RerankOutcome(answer, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                             latency_s=time.perf_counter() - start,
                             fallback_reason="unparseable" if answer.fallback else None)

    def stats(self) -> dict:
        sizes = list(self.batch_sizes)
        return {"batches": {"count": len(sizes), "requests": sum(sizes),
                            "mean_size": round(sum(sizes) / len(sizes), 2) if sizes else None}}

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
            self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        """One ``generate`` for the batch; if it fails, each request alone, so only the culprit fails."""
        try:
            results = self._generate([j.prepared for j in jobs])
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(jobs) > 1:
                log.warning("a batch of %d failed (%s); retrying its requests one by one", len(jobs), exc)
                for job in jobs:
                    self._run([job])
                return
            jobs[0].loop.call_soon_threadsafe(_set, jobs[0].future, None, exc)
            return
        self.batch_sizes.append(len(jobs))
        for j, result in zip(jobs, results, strict=True):
            j.loop.call_soon_threadsafe(_set, j.future, result, None)

    def _generate(self, prepared: list[PreparedPrompt]) -> list[tuple[str, int, int]]:
        import torch
        from transformers import LogitsProcessorList

        from gr2.answer_constraint import RerankAnswerConstraint

        tok, s = self.tokenizer, self.settings
        for p in prepared:  # prepare() refuses these; a request that got here anyway fails alone (see _run)
            if p.prompt_tokens + p.max_tokens > s.max_model_len:
                raise PromptTooLong(p.prompt_tokens, s.max_model_len, p.max_tokens)
        width = max(p.prompt_tokens for p in prepared)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        input_ids = torch.tensor([[pad] * (width - p.prompt_tokens) + p.prompt_ids for p in prepared])
        attention_mask = torch.tensor([[0] * (width - p.prompt_tokens) + [1] * p.prompt_tokens for p in prepared])
        if s.exact_tokens:
            extra = {"min_new_tokens": s.max_new_tokens, "max_new_tokens": s.max_new_tokens}
        else:  # as many tokens as the batch's longest valid answer needs
            sids = [p.answer_keys for p in prepared]
            constraint = RerankAnswerConstraint(tok, sids, width, s.max_reasoning_tokens)
            extra = {"logits_processor": LogitsProcessorList([IncrementalConstraint(constraint, len(prepared))]),
                     "max_new_tokens": max(p.max_tokens for p in prepared)}
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                      eos_token_id=tok.eos_token_id, pad_token_id=pad, **extra)
        new = out[:, width:]
        results = []
        for row, p in zip(new, prepared, strict=True):
            ends = (row == tok.eos_token_id).nonzero() if not s.exact_tokens else []
            n_new = int(ends[0]) + 1 if len(ends) else len(row)
            results.append((tok.decode(row[:n_new], skip_special_tokens=True), p.prompt_tokens, n_new))
        return results


class IncrementalConstraint:
    """``RerankAnswerConstraint`` as a logits processor that keeps each row's state between steps: greedy
    batch decoding keeps rows in place, so each step feeds a row its one new token instead of a replay."""

    def __init__(self, constraint, rows: int):  # noqa: ANN001 - a RerankAnswerConstraint
        self.constraint = constraint
        self.cursors = [constraint.cursor(row) for row in range(rows)]

    def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204 - torch tensors
        import torch

        masked = torch.full_like(scores, float("-inf"))
        start = self.constraint.prompt_length
        for row, cursor in enumerate(self.cursors):
            allowed = cursor.advance(input_ids[row, start:].tolist())
            if allowed is None:
                masked[row] = scores[row]
                masked[row, self.constraint.banned_in_reasoning] = float("-inf")
            else:
                masked[row, allowed] = scores[row, allowed]
        return masked


def _set(future: asyncio.Future, result: object, exc: BaseException | None) -> None:
    if future.done():  # the request timed out meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
