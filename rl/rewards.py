"""GR2's verifiable rewards for the rerank task (DESIGN.md, "Three stages", item 3).

R_rank rewards moving the ground truth up relative to the pre-ranker; R_fmt rewards an answer that
is already a valid permutation. Adding them naively pays the format bonus for copying the input
order, which the policy learns quickly (reward hacking). The conditional reward pays the bonus only
when the answer also helped (R_rank > 0) or there was nothing to improve (target already first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gr2.rerank_format import ParsedAnswer

RewardKind = Literal["conditional", "naive"]
UNPARSEABLE = -1.0


@dataclass(frozen=True)
class RewardBreakdown:
    reward: float
    rank_gain: float  # R_rank
    format_ok: float  # R_fmt
    pre_rank: int  # 1-based rank of the target before reranking
    new_rank: int  # 1-based rank of the target after
    identity: bool
    unparseable: bool
    input_order_tau: float  # Kendall tau of the answer to the input order (1 = copied); NaN when unparseable


def input_order_tau(order: list[int]) -> float:
    """Kendall tau between an answer's order and the input order: a graded copy measure that moves before
    the exact identity rate does (1 = the input order, -1 = reversed)."""
    k = len(order)
    if k < 2:
        return 1.0
    concordant = sum(order[i] < order[j] for i in range(k) for j in range(i + 1, k))
    return 4 * concordant / (k * (k - 1)) - 1


def rank_reward(pre_rank: int, new_rank: int, num_candidates: int) -> float:
    """R_rank = (rank_pre(x*) - rank_re(x*)) / |D|, ranks 1-based."""
    return (pre_rank - new_rank) / num_candidates


def format_reward(answer: ParsedAnswer) -> float:
    """R_fmt = 1 when the answer parsed to a valid permutation without repair."""
    return 1.0 if answer.valid and not answer.repaired and not answer.fallback else 0.0


def score_answer(answer: ParsedAnswer, target_index: int, kind: RewardKind = "conditional",
                 alpha: float = 0.2) -> RewardBreakdown:
    """Reward of one answer; ``target_index`` is the ground truth's 0-based pre-rank position."""
    k = len(answer.order)
    if not 0 <= target_index < k:
        raise ValueError(f"target_index {target_index} is not a candidate position (0..{k - 1})")
    pre_rank = target_index + 1
    new_rank = answer.order.index(target_index) + 1
    r_rank = rank_reward(pre_rank, new_rank, k)
    r_fmt = format_reward(answer)
    if answer.fallback:
        reward = UNPARSEABLE
    elif kind == "naive":
        reward = r_rank + alpha * r_fmt
    elif kind == "conditional":
        reward = r_rank + alpha * r_fmt if (r_rank > 0 or pre_rank == 1) else r_rank
    else:
        raise ValueError(f"unknown reward kind {kind!r}: expected 'conditional' or 'naive'")
    tau = float("nan") if answer.fallback else input_order_tau(answer.order)
    return RewardBreakdown(reward, r_rank, r_fmt, pre_rank, new_rank, answer.is_identity, answer.fallback, tau)
