"""First-slot scores: each candidate's likelihood as the answer's first entry, batched and padded, equal to
scoring that one continuation alone; the order is a valid permutation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gr2.answer_constraint import HEAD, SEPARATOR
from gr2.base_model import load_base_model
from gr2.first_slot import FirstSlotReranker
from gr2.rerank_format import THINK_CLOSE, THINK_OPEN


@pytest.mark.parametrize("answer_format", ["sid", "index"])
def test_batched_scores_equal_one_continuation_scored_alone(tiny_sid_model, ml100k_catalog, ml100k_examples,
                                                            answer_format):
    catalog = dataclasses.replace(ml100k_catalog, answer_format=answer_format)
    model, tok = load_base_model(tiny_sid_model)
    examples = ml100k_examples[:3]
    reranker = FirstSlotReranker(model, tok, catalog, batch_size=2)
    scores = reranker.scores(examples)
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    ex = examples[2]
    prompt = encode(tok.apply_chat_template(catalog.messages(ex), tokenize=False, add_generation_prompt=True))
    for j in (0, 4, 9):
        scored = encode(catalog.answer_keys(ex)[j]) + encode(SEPARATOR)[:1]
        ids = torch.tensor([prompt + encode(THINK_OPEN + THINK_CLOSE + HEAD) + scored])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        alone = sum(logp[ids.shape[1] - len(scored) - 1 + i, t].item() for i, t in enumerate(scored))
        assert scores[2, j] == pytest.approx(alone, abs=1e-3)
    for answer in reranker.rerank(examples):
        assert answer.valid and sorted(answer.order) == list(range(10))
