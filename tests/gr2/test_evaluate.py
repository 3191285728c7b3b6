"""Rerank metrics on hand-made cases: conditional vs end to end, behaviour shares."""

from __future__ import annotations

import pytest

from gr2.evaluate import GAIN_COLUMN, rerank_metrics, reranked_ranks
from gr2.rerank_data import RerankExample
from gr2.rerank_format import ParsedAnswer

# targets pre-ranked 1st, 3rd, 7th, and one not among the candidates
EXAMPLES = [
    RerankExample(0, [9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 10),
    RerankExample(1, [9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 12),
    RerankExample(2, [9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 16),
    RerankExample(3, [9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], 99),
]
IDENTITY = list(range(10))


def test_pre_rank():
    m = rerank_metrics(EXAMPLES, None)
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@5"] == pytest.approx(2 / 3)
    assert m["e2e R@5"] == pytest.approx(2 / 4)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / 2) / 3)  # ranks 1 and 3: 1/log2(2) + 1/log2(4)
    assert m["with_target"] == 3 and m["identity"] == 1.0
    assert m[GAIN_COLUMN] is None and m["ndcg5_gain"] is None  # the baseline is not compared with itself


def test_reranked_answers():
    moved = [6, *[i for i in IDENTITY if i != 6]]  # 7th candidate to the top
    answers = [
        ParsedAnswer(IDENTITY, valid=True),
        ParsedAnswer([2, *[i for i in IDENTITY if i != 2]], valid=True),
        ParsedAnswer(moved, repaired=True),
        ParsedAnswer(IDENTITY, fallback=True),
    ]
    assert reranked_ranks(EXAMPLES, [a.order for a in answers]).tolist() == [1, 1, 1, 0]
    m = rerank_metrics(EXAMPLES, answers)
    assert m["R@1"] == 1.0 and m["e2e R@5"] == pytest.approx(0.75)
    assert (m["valid"], m["repaired"], m["fallback"], m["identity"]) == (0.5, 0.25, 0.25, 0.25)
    # pre-rank NDCG@5 over the 3 users with a target is (1 + 1/2 + 0) / 3; every target on top doubles it
    assert m["ndcg5_gain"] == pytest.approx(1.0)
    low, high = m["ndcg5_gain_ci"]
    assert low <= 1.0 <= high and m[GAIN_COLUMN].startswith("+100.0% [")


def test_identity_answers_gain_nothing():
    m = rerank_metrics(EXAMPLES, [ParsedAnswer(IDENTITY, valid=True) for _ in EXAMPLES])
    assert m["ndcg5_gain"] == 0.0 and m["ndcg5_gain_ci"] == [0.0, 0.0] and m[GAIN_COLUMN] == "+0.0% [+0.0%, +0.0%]"


def test_top1_diagnostics_say_how_often_the_top_changes_and_agrees_with_the_teacher():
    moved = [6, *[i for i in IDENTITY if i != 6]]
    answers = [ParsedAnswer(IDENTITY, valid=True), ParsedAnswer(moved, valid=True),
               ParsedAnswer(moved, valid=True), ParsedAnswer(IDENTITY, valid=True)]
    teacher = [ParsedAnswer(moved, valid=True)] * 2 + [ParsedAnswer(IDENTITY, valid=True)] * 2
    m = rerank_metrics(EXAMPLES, answers, teacher=teacher)
    assert m["new top-1"] == 0.5
    assert m["top-1 = teacher"] == 0.5  # the second (both moved) and the last (both kept)
    assert rerank_metrics(EXAMPLES, None)["new top-1"] == 0.0
    assert rerank_metrics(EXAMPLES, answers)["top-1 = teacher"] is None
