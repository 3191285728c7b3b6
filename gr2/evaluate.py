"""``gr2 eval rerank``: how much a reranker improves on the pre-ranker, and how well it behaves.

Ranking metrics (R@1, R@5, NDCG@5) are reported twice: *conditional* on the target being among
the K candidates (what a reranker can change) and *end to end* over every user (a target outside
the candidates is a miss). Behaviour: share of answers valid without repair, repaired, fallen back
to the pre-rank order, and identical to the input order (the reward-hacking signature).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evals.metrics import hit_rate_at_k, ndcg_at_k
from gr2.rerank_data import RerankExample
from gr2.rerank_format import ParsedAnswer

METRIC_COLUMNS = ("R@1", "R@5", "NDCG@5", "e2e R@5", "e2e NDCG@5", "valid", "repaired", "fallback", "identity")


def reranked_ranks(examples: Sequence[RerankExample], orders: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of each target in its reranked list; 0 when the target is not a candidate."""
    ranks = np.zeros(len(examples), dtype=np.int64)
    for n, (ex, order) in enumerate(zip(examples, orders, strict=True)):
        if ex.target_index is not None:
            ranks[n] = list(order).index(ex.target_index) + 1
    return ranks


def rerank_metrics(examples: Sequence[RerankExample], answers: Sequence[ParsedAnswer] | None,
                   candidate_recall: float | None = None) -> dict[str, float]:
    """Metrics of one system; ``answers=None`` is the pre-rank order itself.

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

    return {
        "R@1": hit_rate_at_k(cond, 1) if len(cond) else 0.0,
        "R@5": hit_rate_at_k(cond, 5) if len(cond) else 0.0,
        "NDCG@5": ndcg_at_k(cond, 5) if len(cond) else 0.0,
        "e2e R@5": hit_rate_at_k(ranks, 5) if candidate_recall is None else hit_rate_at_k(cond, 5) * candidate_recall,
        "e2e NDCG@5": ndcg_at_k(ranks, 5) if candidate_recall is None else ndcg_at_k(cond, 5) * candidate_recall,
        "valid": share("valid"), "repaired": share("repaired"), "fallback": share("fallback"),
        "identity": share("is_identity") if flags else 1.0,
        "users": len(examples), "with_target": int(present.sum()), "k": k, "candidate_recall": candidate_recall,
    }
