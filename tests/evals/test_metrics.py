"""Metrics on hand-made cases and against a brute-force sort."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evals.metrics import (
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    ndcg_gains,
    ranks_from_scores,
    ranks_in_lists,
    relative_gain,
    summarize,
)


def test_rank_counts_items_above_target():
    scores = np.array([[0.1, 0.5, 0.3, 0.9], [0.4, 0.3, 0.2, 0.1]])
    assert ranks_from_scores(scores, np.array([2, 0])).tolist() == [3, 1]


def test_excluded_items_are_not_ranked_but_the_target_always_is():
    scores = np.array([[0.1, 0.5, 0.3, 0.9], [0.1, 0.5, 0.3, 0.9]])
    ranks = ranks_from_scores(scores, np.array([2, 2]), exclude=[np.array([3]), np.array([2, 3, 1])])
    assert ranks.tolist() == [2, 1]  # row 2 lists its own target among the exclusions: still ranked
    assert scores[0, 3] == 0.9  # input untouched


def test_ties_go_to_the_lower_item_index():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    assert ranks_from_scores(np.repeat(scores, 3, 0), np.array([0, 1, 2])).tolist() == [1, 2, 3]


def test_ranks_match_a_stable_sort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(50, 30)).astype(np.float32)  # many ties
    targets = rng.integers(0, 30, size=50)
    exclude = [rng.choice(30, size=rng.integers(0, 6), replace=False) for _ in range(50)]
    ranks = ranks_from_scores(scores, targets, exclude)
    for row in range(50):
        keep = [i for i in range(30) if i not in set(exclude[row].tolist()) or i == targets[row]]
        order = sorted(keep, key=lambda i: (-scores[row, i], i))
        assert ranks[row] == order.index(targets[row]) + 1


def test_hr_ndcg_mrr_by_hand():
    ranks = np.array([1, 2, 11, 0])  # 0 = not ranked (e.g. not among the candidates)
    assert hit_rate_at_k(ranks, 10) == 0.5
    assert hit_rate_at_k(ranks, 11) == 0.75
    assert ndcg_at_k(ranks, 10) == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert ndcg_at_k(ranks, 1) == pytest.approx(0.25)
    assert mrr(ranks) == pytest.approx((1 + 0.5 + 1 / 11) / 4)
    assert mrr(ranks, k=10) == pytest.approx(1.5 / 4)
    s = summarize(ranks)
    assert s["hr@10"] == 0.5 and s["users"] == 4 and set(s) == {"hr@10", "hr@50", "ndcg@10", "mrr", "users"}


def test_ranks_in_lists():
    assert ranks_in_lists([[5, 3, 9], [1, 2, 3], [7]], [9, 4, 7]).tolist() == [3, 0, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        hit_rate_at_k(np.array([1]), 0)
    with pytest.raises(ValueError, match="out of range"):
        ranks_from_scores(np.zeros((1, 3)), np.array([3]))
    with pytest.raises(ValueError, match="one target per row"):
        ranks_from_scores(np.zeros((2, 3)), np.array([0]))


def test_ndcg_gains_per_user():
    assert ndcg_gains(np.array([1, 3, 0, 6]), 5).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_relative_gain_paired_bootstrap():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = base * 1.10  # every user 10% better: no sampling noise in the ratio
    point, low, high = relative_gain(base, better)
    assert point == pytest.approx(0.10) and low == pytest.approx(0.10) and high == pytest.approx(0.10)

    noisy = base * 1.10 + rng.normal(0, 0.2, len(base))
    point, low, high = relative_gain(base, noisy)
    assert low < point < high and high - low > 0.02  # noise widens the interval around the point
    few = relative_gain(base[:40], noisy[:40])
    assert few[2] - few[1] > high - low  # fewer users, wider interval

    assert relative_gain(base, base) == (0.0, 0.0, 0.0)
    assert relative_gain(np.zeros(3), np.ones(3)) is None
    with pytest.raises(ValueError, match="shape"):
        relative_gain(base, base[:-1])
