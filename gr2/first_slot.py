"""A trained reranker's first-slot distribution as a ranking (FIRST, Reddy et al. 2024, as rank_llm offers it).

Greedy decoding keeps only each slot's most likely candidate. A student distilled from a teacher that keeps
the pre-ranker's first item about half the time learns "keep" as the single most likely first pick, so its
greedy answer can collapse to the input order while the rest of its first-slot distribution still says which
candidates it would promote. ``FirstSlotReranker`` reads that distribution: the log-likelihood of each
candidate's key (SID or list number) as the answer's first entry, after the reasoning the model was trained
to write when it writes none (``<think></think>``), and orders the candidates by it. One forward pass per
candidate and no generation; every answer is a valid permutation. ``gr2 eval diagnose`` reports it beside
the greedy answer (what the student knows against what it says).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from gr2.answer_constraint import HEAD, SEPARATOR, TAIL
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import THINK_CLOSE, THINK_OPEN, ParsedAnswer, format_answer, parse_answer
from gr2.sid_lm import tail_logprobs


class FirstSlotReranker:
    """The ``Reranker`` interface: candidates ordered by the model's likelihood of naming each one first."""

    def __init__(self, model, tokenizer, catalog: ItemCatalog, batch_size: int = 4):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.batch_size = batch_size  # examples a forward pass (x K candidate rows)

    @classmethod
    def from_dir(cls, model_dir, catalog: ItemCatalog, batch_size: int = 4) -> FirstSlotReranker:
        from gr2.base_model import load_base_model

        model, tokenizer = load_base_model(model_dir)
        return cls(model, tokenizer, catalog, batch_size)

    def close(self) -> None:
        self.model = None

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def scores(self, examples: Sequence[RerankExample], progress: bool = False) -> np.ndarray:
        """(examples, K) log P(candidate's key, then the end of the entry | prompt, empty reasoning, list head).
        The entry's end (the separator's first token) is scored too, so a key that is a prefix of another
        ("1" of "10") is not credited with the longer key's mass."""
        import torch

        tok = self.tokenizer
        head = self._encode(THINK_OPEN + THINK_CLOSE + HEAD)
        k = len(examples[0].candidates) if examples else 0
        out = np.zeros((len(examples), k))
        pad = tok.pad_token_id or 0
        for lo in tqdm(range(0, len(examples), self.batch_size), desc="first-slot scores", unit="batch",
                       disable=not progress):
            batch = examples[lo:lo + self.batch_size]
            rows, spans = [], []
            for ex in batch:
                prompt = self._encode(tok.apply_chat_template(self.catalog.messages(ex), tokenize=False,
                                                              add_generation_prompt=True))
                end = self._encode(SEPARATOR if len(ex.candidates) > 1 else TAIL)[:1]
                for key in self.catalog.answer_keys(ex):
                    scored = self._encode(key) + end
                    rows.append(prompt + head + scored)
                    spans.append(len(scored))
            span = max(spans)
            logp = tail_logprobs(self.model, rows, span, pad)  # a shorter key's row: its span's tail only
            keep = torch.arange(span)[None, :] >= (span - torch.tensor(spans))[:, None]
            out[lo:lo + len(batch)] = (logp * keep).sum(-1).view(len(batch), k).double().numpy()
        return out

    def rerank(self, examples: Sequence[RerankExample], progress: bool = False) -> list[ParsedAnswer]:
        answers = []
        for ex, row in zip(examples, self.scores(examples, progress), strict=True):
            keys = self.catalog.answer_keys(ex)
            order = np.argsort(-row, kind="stable")
            answers.append(parse_answer(format_answer("", [keys[i] for i in order]), keys))
        return answers
