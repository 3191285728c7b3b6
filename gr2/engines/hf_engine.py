"""The same rerank engine interface on plain ``transformers`` generate: the benchmark's fair peer.

A single worker thread owns the model. Requests wait in a queue; whenever the worker is free it
takes every waiting request (up to ``max_batch``) and runs them as one left-padded ``generate``, so
concurrent clients are batched the way a careful hand-written server would batch them (static
batching: a batch runs to its longest answer and newcomers wait for the next one). Answers are
decoded under ``gr2.answer_constraint`` (exact permutations, as the vLLM engine's logits processor
does), except in the benchmark's ``exact_tokens`` mode, where both engines generate unconstrained.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gr2.engines.vllm_engine import BaseRerankEngine, EngineSettings, RerankOutcome
from gr2.rerank_format import PromptItem, parse_answer

log = logging.getLogger(__name__)


@dataclass
class _Job:
    prompt: str
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
        self.tokenizer = AutoTokenizer.from_pretrained(self.settings.model_dir)
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

    async def rerank(self, history: Sequence[PromptItem], candidates: Sequence[PromptItem],
                     emphasized_history: Sequence[int] = (), timeout_s: float | None = None,
                     adapter: str | None = None) -> RerankOutcome:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        job = _Job(self.prompt(history, candidates, emphasized_history), loop.create_future(), loop)
        self._queue.put(job)
        try:
            text, prompt_tokens, completion_tokens = await asyncio.wait_for(
                asyncio.shield(job.future), timeout=timeout_s or self.settings.timeout_s)
        except TimeoutError:  # the batch keeps running; its answer is dropped
            return self._fallback(len(candidates), "timeout", start)
        except Exception:  # noqa: BLE001 - a failed generate must become a fallback answer, not a 5xx
            log.exception("generate failed")
            return self._fallback(len(candidates), "engine error", start)
        answer = parse_answer(text, [c.sid for c in candidates])
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
            try:
                results = self._generate([j.prompt for j in jobs])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for j in jobs:
                    j.loop.call_soon_threadsafe(_set, j.future, None, exc)
                continue
            self.batch_sizes.append(len(jobs))
            for j, result in zip(jobs, results, strict=True):
                j.loop.call_soon_threadsafe(_set, j.future, result, None)

    def _generate(self, prompts: list[str]) -> list[tuple[str, int, int]]:
        import torch
        from transformers import LogitsProcessorList

        from gr2.answer_constraint import RerankAnswerConstraint, prompt_candidate_sids

        tok, s = self.tokenizer, self.settings
        batch = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        if batch["input_ids"].shape[1] + s.max_new_tokens > s.max_model_len:
            raise ValueError(f"prompt of {batch['input_ids'].shape[1]} tokens leaves no room to answer")
        if s.exact_tokens:
            extra = {"min_new_tokens": s.max_new_tokens, "max_new_tokens": s.max_new_tokens}
        else:  # as many tokens as the batch's longest valid answer needs
            constraint = RerankAnswerConstraint(tok, [prompt_candidate_sids(p) for p in prompts],
                                                batch["input_ids"].shape[1], s.max_reasoning_tokens)
            extra = {"logits_processor": LogitsProcessorList([constraint]),
                     "max_new_tokens": max(constraint.token_budget(i) for i in range(len(prompts)))}
        with torch.inference_mode():
            out = self.model.generate(**batch, do_sample=False, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id, **extra)
        new = out[:, batch["input_ids"].shape[1]:]
        lengths = batch["attention_mask"].sum(1).tolist()
        results = []
        for row, n_prompt in zip(new, lengths, strict=True):
            ends = (row == tok.eos_token_id).nonzero() if not s.exact_tokens else []
            n_new = int(ends[0]) + 1 if len(ends) else len(row)
            results.append((tok.decode(row[:n_new], skip_special_tokens=True), int(n_prompt), n_new))
        return results


def _set(future: asyncio.Future, result: object, exc: BaseException | None) -> None:
    if future.done():  # the request timed out meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
