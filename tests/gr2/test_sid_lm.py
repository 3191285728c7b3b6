"""The stage-1 model as a recommender: SID likelihood of candidates, beam search over the catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from gr2.evaluate import rerank_metrics
from gr2.sid_lm import LikelihoodReranker, LikelihoodSettings, SIDLikelihood, sequence_conversation


@pytest.fixture(scope="module")
def scorer(tiny_sid_model, ml100k_catalog):
    from gr2.base_model import load_base_model

    model, tok = load_base_model(tiny_sid_model)
    return SIDLikelihood(model, tok, ml100k_catalog.sids, LikelihoodSettings(max_history=8, batch_size=3, beams=6))


def test_candidate_scores_are_the_model_log_likelihood_of_the_sid_continuation(scorer, ml100k_catalog):
    """Each score equals log P(SID | prompt + history SIDs) from one plain forward pass of the chat-formatted text."""
    import torch

    histories, candidates = [[1, 2, 3], [4]], [[5, 6, 7], [8, 9, 10]]
    scores = scorer.candidate_scores(histories, candidates)
    tok, model = scorer.tokenizer, scorer.model
    conv = sequence_conversation(ml100k_catalog.sids.sids([1, 2, 3]))
    text = tok.apply_chat_template(conv["prompt"], tokenize=False, add_generation_prompt=True)
    prefix = tok.encode(text + conv["completion"][0]["content"], add_special_tokens=False)
    item = tok.encode(ml100k_catalog.sids.sid(6), add_special_tokens=False)
    ids = torch.tensor([prefix + item])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    expected = sum(float(logp[len(prefix) - 1 + j, t]) for j, t in enumerate(item))
    assert scores.shape == (2, 3)
    assert scores[0, 1] == pytest.approx(expected, abs=1e-4)
    assert (scores < 0).all()


def test_likelihood_reranker_orders_by_score_and_always_answers_a_permutation(scorer, ml100k_catalog,
                                                                               ml100k_examples):
    reranker = LikelihoodReranker(scorer, ml100k_catalog)
    examples = ml100k_examples[:6]
    answers = reranker.rerank(examples)
    scores = scorer.candidate_scores([e.history for e in examples], [e.candidates for e in examples])
    for answer, row in zip(answers, scores, strict=True):
        assert answer.valid and not answer.repaired and sorted(answer.order) == list(range(10))
        assert list(answer.order) == np.argsort(-row, kind="stable").tolist()
    assert rerank_metrics(examples, answers)["valid"] == 1.0


def test_beam_search_returns_catalogue_items_outside_the_history(scorer, ml100k):
    histories = [list(range(1, 6)), [10, 11]]
    top = scorer.top_items(histories, k=5)
    assert top.shape == (2, 5)
    for row, hist in zip(top, histories, strict=True):
        assert ((row >= 0) & (row < ml100k.num_items)).all()
        assert not set(row.tolist()) & set(hist) and len(set(row.tolist())) == 5
