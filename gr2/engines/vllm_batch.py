"""Offline batched vLLM decoding for evaluation: the ``gr2.reranker.Reranker`` interface on ``vllm.LLM``.

``gr2 eval rerank`` scores every user of a split whose target is a candidate (about 5,000 a split on
Games). ``transformers`` generate runs static left-padded batches, each as long as its longest answer;
vLLM batches continuously over a paged KV cache, which is what makes whole splits affordable. Decoding
is what the server does: the same engine arguments (``vllm_engine_kwargs``), greedy, the same chat
template, and the permutation logits processor when ``settings.constrained`` (free decoding otherwise).
Prompts are tokenized here exactly as ``Reranker`` tokenizes them, so both backends see the same ids.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from gr2.engines.vllm_engine import EngineSettings, default_cpu_reserved, vllm_engine_kwargs
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import ParsedAnswer, parse_answer
from gr2.reranker import GenerationSettings

log = logging.getLogger(__name__)


def eval_engine_settings(model_dir: str | Path, settings: GenerationSettings) -> EngineSettings:
    """The serving defaults for an offline engine: room for the longest prompt ``settings`` allows plus
    its answer (within the model's positions), and on small CPU machines every core for the model (no
    HTTP side to keep one for)."""
    length = max(4096, settings.max_prompt_tokens + 1024)
    positions = json.loads((Path(model_dir) / "config.json").read_text()).get("max_position_embeddings")
    return EngineSettings(str(model_dir), max_model_len=min(length, positions) if positions else length,
                          max_new_tokens=settings.max_new_tokens, max_reasoning_tokens=settings.max_reasoning_tokens,
                          cpu_reserved=default_cpu_reserved())


class VLLMReranker:
    """Greedy reranking of many examples in one continuously batched vLLM run; ``close()`` frees the engine.

    One engine serves every ``GenerationSettings`` variant of a model (``with_settings``): constrained and
    free decoding differ only per request, so the free-decoding rows do not pay a second engine start."""

    def __init__(self, llm, tokenizer, catalog: ItemCatalog, settings: GenerationSettings | None = None,
                 model_dir: str | Path = ""):
        self.llm = llm
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.settings = settings or GenerationSettings()
        self.model_dir = Path(model_dir)

    @classmethod
    def from_dir(cls, model_dir: str | Path, catalog: ItemCatalog, settings: GenerationSettings | None = None,
                 engine: EngineSettings | None = None) -> VLLMReranker:
        """Start a vLLM engine on ``model_dir`` (about a minute on 2 CPU cores for a small model)."""
        from transformers import AutoTokenizer
        from vllm import LLM

        settings = settings or GenerationSettings()
        engine = engine or eval_engine_settings(model_dir, settings)
        if engine.constraint != "permutation":
            raise ValueError("offline evaluation decodes under the permutation processor (constraint='permutation')")
        llm = LLM(**vllm_engine_kwargs(engine))
        return cls(llm, AutoTokenizer.from_pretrained(str(model_dir)), catalog, settings, model_dir)

    def with_settings(self, settings: GenerationSettings) -> VLLMReranker:
        """The same engine decoding under other settings (e.g. free decoding beside constrained)."""
        return VLLMReranker(self.llm, self.tokenizer, self.catalog, settings, self.model_dir)

    def close(self) -> None:
        """Stop the engine process and drop the model, so the next model's engine has the memory."""
        if self.llm is None:
            return
        try:
            self.llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - shutting down a broken engine must not hide the real error
            log.warning("vLLM engine did not shut down cleanly", exc_info=True)
        self.llm = None
        gc.collect()

    def __enter__(self) -> VLLMReranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, conversations: Sequence[list[dict[str, str]]], progress: bool = False,
                 candidate_sids: Sequence[Sequence[str]] | None = None) -> list[str]:
        """Greedy answers; with ``candidate_sids`` and ``settings.constrained`` each answer is a valid permutation."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from gr2.answer_constraint import RerankAnswerConstraint
        from gr2.engines.permutation_constraint import rerank_request_args

        if self.llm is None:
            raise RuntimeError("the vLLM engine was closed")
        tok, s = self.tokenizer, self.settings
        max_len = self.llm.llm_engine.model_config.max_model_len
        constrained = s.constrained and candidate_sids is not None
        budgets = RerankAnswerConstraint(tok, candidate_sids, 0, s.max_reasoning_tokens) if constrained else None
        prompts, params = [], []
        for n, conversation in enumerate(conversations):
            text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]  # as Reranker tokenizes: no second BOS
            if len(ids) > s.max_prompt_tokens:
                raise ValueError(f"prompt of {len(ids)} tokens exceeds max_prompt_tokens")
            if constrained:  # never cut a constrained answer short, as Reranker does
                max_tokens = max(s.max_new_tokens, budgets.token_budget(n))
                extra = rerank_request_args(candidate_sids[n], s.max_reasoning_tokens)
            else:
                max_tokens, extra = s.max_new_tokens, None
            if len(ids) + max_tokens > max_len:
                raise ValueError(f"prompt of {len(ids)} tokens plus {max_tokens} answer tokens exceeds the "
                                 f"engine's max_model_len ({max_len})")
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            # detokenized below with the HF tokenizer, exactly as Reranker decodes
            params.append(SamplingParams(temperature=0.0, max_tokens=max_tokens, extra_args=extra, detokenize=False))
        outputs = self.llm.generate(prompts, params, use_tqdm=_progress_bar if progress else False)
        return [tok.decode(out.outputs[0].token_ids, skip_special_tokens=True) for out in outputs]

    def rerank(self, examples: Sequence[RerankExample], progress: bool = False) -> list[ParsedAnswer]:
        texts = self.generate([self.catalog.messages(ex) for ex in examples], progress=progress,
                              candidate_sids=[self.catalog.answer_keys(ex) for ex in examples])
        return [parse_answer(t, self.catalog.answer_keys(ex)) for t, ex in zip(texts, examples, strict=True)]


def _progress_bar(*args, **kwargs) -> tqdm:
    """vLLM's bar over finished prompts (one per example), named like Reranker's; its other bars (prompt
    rendering, instantaneous here) stay hidden."""
    if kwargs.get("desc") == "Processed prompts":
        kwargs.update(desc="rerank (vllm)", unit="example")
    else:
        kwargs["disable"] = True
    return tqdm(*args, **kwargs)
