"""Reranker inference: prompts in, permutations out.

``Reranker`` decodes with Hugging Face ``generate`` (greedy, left-padded batches): no engine to start,
so small tests and tiny recipes use it. Evaluation decodes as served, through vLLM
(``gr2.engines.vllm_batch.VLLMReranker``, same interface); ``load_reranker`` picks by
``GenerationSettings.backend``. Every answer goes through ``parse_answer``, so the caller always gets a
full permutation of its candidates plus the ``valid``/``repaired``/``fallback`` flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import ParsedAnswer, parse_answer


@dataclass
class GenerationSettings:
    max_new_tokens: int = 320
    batch_size: int = 16
    max_prompt_tokens: int = 3072
    constrained: bool = True  # decode only valid permutations (as serving does); False: free text
    max_reasoning_tokens: int = 160  # constrained decoding cuts the reasoning here
    backend: str = "vllm"  # "vllm": as served, whole splits affordable; "hf": transformers generate, no engine start


BACKENDS = ("vllm", "hf")


class Reranker:
    def __init__(self, model, tokenizer, catalog: ItemCatalog, settings: GenerationSettings | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.settings = settings or GenerationSettings()

    @classmethod
    def from_dir(cls, model_dir: str | Path, catalog: ItemCatalog,
                 settings: GenerationSettings | None = None) -> Reranker:
        from gr2.base_model import load_base_model

        model, tokenizer = load_base_model(model_dir)
        return cls(model, tokenizer, catalog, settings)

    def close(self) -> None:
        """Drop the model (the vLLM backend's ``close`` stops its engine; callers treat both alike)."""
        self.model = None

    def generate(self, conversations: Sequence[list[dict[str, str]]], progress: bool = False,
                 candidate_sids: Sequence[Sequence[str]] | None = None) -> list[str]:
        """Greedy answers; with ``candidate_sids`` and ``settings.constrained`` each answer is a valid permutation."""
        import torch
        from transformers import LogitsProcessorList

        from gr2.answer_constraint import RerankAnswerConstraint

        tok, s = self.tokenizer, self.settings
        texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        outputs: list[str] = []
        batches = range(0, len(texts), s.batch_size)
        for start in tqdm(batches, desc="rerank", unit="batch", disable=not progress):
            batch = tok(texts[start : start + s.batch_size], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False)
            if batch["input_ids"].shape[1] > s.max_prompt_tokens:
                raise ValueError(f"prompt of {batch['input_ids'].shape[1]} tokens exceeds max_prompt_tokens")
            batch = batch.to(self.model.device)
            processors = LogitsProcessorList()
            max_new_tokens = s.max_new_tokens
            if s.constrained and candidate_sids is not None:
                constraint = RerankAnswerConstraint(tok, candidate_sids[start : start + s.batch_size],
                                                    batch["input_ids"].shape[1], s.max_reasoning_tokens)
                processors.append(constraint)
                # never cut a constrained answer short: long SIDs and titles can need more than the setting
                rows = len(candidate_sids[start : start + s.batch_size])
                max_new_tokens = max(max_new_tokens, *(constraint.token_budget(r) for r in range(rows)))
            with torch.no_grad():
                generated = self.model.generate(
                    **batch, max_new_tokens=max_new_tokens, do_sample=False, logits_processor=processors,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                )
            new_tokens = generated[:, batch["input_ids"].shape[1]:]
            outputs += tok.batch_decode(new_tokens, skip_special_tokens=True)
        return outputs

    def rerank(self, examples: Sequence[RerankExample], progress: bool = False) -> list[ParsedAnswer]:
        texts = self.generate([self.catalog.messages(ex) for ex in examples], progress=progress,
                              candidate_sids=[self.catalog.answer_keys(ex) for ex in examples])
        return [parse_answer(t, self.catalog.answer_keys(ex)) for t, ex in zip(texts, examples, strict=True)]


def load_reranker(model_dir: str | Path, catalog: ItemCatalog, settings: GenerationSettings,
                  reuse: object | None = None):  # noqa: ANN201 - a Reranker or a VLLMReranker
    """A reranker for ``settings.backend``. ``reuse`` is the caller's previous reranker: a vLLM one on the
    same model keeps its engine (only the settings change); anything else is closed first, so that one
    vLLM engine has released its memory before the next model's engine starts."""
    from gr2.engines.vllm_batch import VLLMReranker

    if settings.backend not in BACKENDS:
        raise ValueError(f"generation backend must be one of {BACKENDS}, got {settings.backend!r}")
    if (settings.backend == "vllm" and isinstance(reuse, VLLMReranker) and reuse.llm is not None
            and reuse.model_dir == Path(model_dir)):
        return reuse.with_settings(settings)
    if reuse is not None:
        reuse.close()
    if settings.backend == "hf":
        return Reranker.from_dir(model_dir, catalog, settings)
    return VLLMReranker.from_dir(model_dir, catalog, settings)
