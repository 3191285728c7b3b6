"""``gr2 eval rerank``: how much a reranker improves on the pre-ranker, and how well it behaves.

Ranking metrics (R@1, R@5, NDCG@5) are reported twice: *conditional* on the target being among
the K candidates (what a reranker can change) and *end to end* over every user (a target outside
the candidates is a miss). Behaviour: share of answers valid without repair, repaired, fallen back
to the pre-rank order, and identical to the input order (the reward-hacking signature).

A reranker's conditional NDCG@5 is also given relative to the pre-rank order of the same users, with a
paired bootstrap 95% interval: at ~200 users a split, gains of a few percent sit inside the noise, and
the interval says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evals.metrics import hit_rate_at_k, ndcg_at_k, ndcg_gains, relative_gain
from gr2.rerank_data import RerankExample
from gr2.rerank_format import ParsedAnswer

GAIN_COLUMN = "NDCG@5 vs pre-rank (95% CI)"
METRIC_COLUMNS = ("R@1", "R@5", "NDCG@5", GAIN_COLUMN, "e2e R@5", "e2e NDCG@5",
                  "valid", "repaired", "fallback", "identity", "new top-1", "top-1 = teacher")


def reranked_ranks(examples: Sequence[RerankExample], orders: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of each target in its reranked list; 0 when the target is not a candidate."""
    ranks = np.zeros(len(examples), dtype=np.int64)
    for n, (ex, order) in enumerate(zip(examples, orders, strict=True)):
        if ex.target_index is not None:
            ranks[n] = list(order).index(ex.target_index) + 1
    return ranks


def rerank_metrics(examples: Sequence[RerankExample], answers: Sequence[ParsedAnswer] | None,
                   candidate_recall: float | None = None,
                   teacher: Sequence[ParsedAnswer] | None = None) -> dict[str, Any]:
    """Metrics of one system; ``answers=None`` is the pre-rank order itself.

    Two diagnostics say *why* a row lands where it does: ``new top-1``, how often the system puts
    something other than the pre-ranker's first candidate first, and, given the ``teacher``'s answers for
    the same examples, ``top-1 = teacher``, how often its first pick is the teacher's.

    ``candidate_recall``: when ``examples`` hold only rows whose target is a candidate (a sample of them),
    the split's share of such rows; end-to-end metrics are then the conditional ones times that share
    (every other user is a miss whatever the order). Without it, end-to-end metrics are over ``examples``."""
    k = len(examples[0].candidates) if examples else 0
    orders = [a.order for a in answers] if answers is not None else [list(range(len(e.candidates))) for e in examples]
    ranks = reranked_ranks(examples, orders)
    present = ranks > 0
    cond = ranks[present]
    flags = answers if answers is not None else []

    def share(attr: str) -> float | None:  # behaviour rates do not apply to the pre-rank order itself
        return float(np.mean([getattr(a, attr) for a in flags])) if flags else None

    gain = None
    if answers is not None and len(cond):  # paired with the pre-rank positions of the same users
        pre_rank = np.array([ex.target_index + 1 for ex in examples if ex.target_index is not None])
        gain = relative_gain(ndcg_gains(pre_rank, 5), ndcg_gains(cond, 5))
    return {
        "R@1": hit_rate_at_k(cond, 1) if len(cond) else 0.0,
        "R@5": hit_rate_at_k(cond, 5) if len(cond) else 0.0,
        "NDCG@5": ndcg_at_k(cond, 5) if len(cond) else 0.0,
        "e2e R@5": hit_rate_at_k(ranks, 5) if candidate_recall is None else hit_rate_at_k(cond, 5) * candidate_recall,
        "e2e NDCG@5": ndcg_at_k(ranks, 5) if candidate_recall is None else ndcg_at_k(cond, 5) * candidate_recall,
        "valid": share("valid"), "repaired": share("repaired"), "fallback": share("fallback"),
        "identity": share("is_identity") if flags else 1.0,
        GAIN_COLUMN: None if gain is None else f"{gain[0]:+.1%} [{gain[1]:+.1%}, {gain[2]:+.1%}]",
        "ndcg5_gain": None if gain is None else gain[0], "ndcg5_gain_ci": None if gain is None else list(gain[1:]),
        "users": len(examples), "with_target": int(present.sum()), "k": k, "candidate_recall": candidate_recall,
        "new top-1": float(np.mean([o[0] != 0 for o in orders])) if len(orders) else None,
        "top-1 = teacher": None if teacher is None else float(np.mean(
            [o[0] == t.order[0] for o, t in zip(orders, teacher, strict=True)])),
    }
