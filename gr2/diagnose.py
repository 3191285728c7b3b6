"""Why a reranker lands where it does: where its order departs from the pre-rank order and from the teacher's.

A student that trails the order it is handed either copies that order badly (its tail is shuffled), or
promotes the wrong items (its top places go to candidates that are not the next item), or demotes the right
ones (the pre-ranker's correct first pick pushed down). ``disagreement_profile`` separates the three from the
student's answers alone, next to the teacher's answers on the same examples, so each figure has the policy
the student was distilled from beside it:

- *changes*: how often the first place changes, and when it does, how often the new first is the target
  (promotion precision) against how often the old first was (what the change gave up);
- *copying*: the share of answers whose items below the top ``promote`` keep the pre-rank relative order,
  and Kendall's tau to the pre-rank order;
- *agreement with the teacher*: per answer position, the share of examples where the student and the teacher
  place the same candidate;
- *target moves*: the share of examples where the target moves up, stays or moves down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evals.metrics import ndcg_at_k
from gr2.rerank_data import RerankExample


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's tau between ``order`` (candidate indices, best first) and the identity order."""
    n = len(order)
    if n < 2:
        return 1.0
    concordant = sum(1 for i in range(n) for j in range(i + 1, n) if order[i] < order[j])
    pairs = n * (n - 1) // 2
    return (2 * concordant - pairs) / pairs


def keeps_tail_order(order: Sequence[int], head: int) -> bool:
    """Whether the items below the first ``head`` places keep their pre-rank relative order."""
    tail = list(order[head:])
    return tail == sorted(tail)


def _side(examples: Sequence[RerankExample], orders: Sequence[Sequence[int]], head: int) -> dict[str, float]:
    targets = [ex.target_index for ex in examples]
    changed = np.array([o[0] != 0 for o in orders])
    new_first_hits = np.array([o[0] == t for o, t in zip(orders, targets, strict=True)])
    old_first_hits = np.array([t == 0 for t in targets])
    moves = np.array([o.index(t) - t for o, t in zip(orders, targets, strict=True)])  # < 0: the target moved up
    ranks = np.array([o.index(t) + 1 for o, t in zip(orders, targets, strict=True)])
    return {
        "NDCG@5": ndcg_at_k(ranks, 5),
        "new top-1": float(changed.mean()),
        "new top-1 is the target": float(new_first_hits[changed].mean()) if changed.any() else None,
        "replaced top-1 was the target": float(old_first_hits[changed].mean()) if changed.any() else None,
        "tail keeps pre-rank order": float(np.mean([keeps_tail_order(o, head) for o in orders])),
        "kendall tau to pre-rank": float(np.mean([kendall_tau(o) for o in orders])),
        "target up": float(np.mean(moves < 0)), "target same": float(np.mean(moves == 0)),
        "target down": float(np.mean(moves > 0)),
    }


def disagreement_profile(examples: Sequence[RerankExample], student: Sequence[Sequence[int]],
                         teacher: Sequence[Sequence[int]], head: int = 3,
                         others: dict[str, Sequence[Sequence[int]]] | None = None) -> dict:
    """The student's and the teacher's behaviour side by side (rows of one table), and the per-position
    agreement of the student with the teacher and with the pre-rank order. ``others`` adds rows (the same
    student's first-slot order, say). Every example must hold its target among the candidates; orders are
    candidate indices, best first."""
    if any(ex.target_index is None for ex in examples):
        raise ValueError("disagreement_profile needs examples whose target is a candidate")
    student = [list(o) for o in student]
    teacher = [list(o) for o in teacher]
    k = len(examples[0].candidates) if examples else 0
    identity = [list(range(k)) for _ in examples]
    rows = [{"system": "pre-rank", **_side(examples, identity, head)},
            {"system": "teacher (greedy)", **_side(examples, teacher, head)},
            {"system": "student", **_side(examples, student, head)}]
    rows += [{"system": name, **_side(examples, [list(o) for o in orders], head)}
             for name, orders in (others or {}).items()]
    same_as_teacher = [float(np.mean([s[j] == t[j] for s, t in zip(student, teacher, strict=True)]))
                       for j in range(k)]
    same_as_pre_rank = [float(np.mean([s[j] == j for s in student])) for j in range(k)]
    teacher_as_pre_rank = [float(np.mean([t[j] == j for t in teacher])) for j in range(k)]
    return {"users": len(examples), "head": head, "rows": rows,
            "position agreement": {"student = teacher": same_as_teacher, "student = pre-rank": same_as_pre_rank,
                                   "teacher = pre-rank": teacher_as_pre_rank}}
