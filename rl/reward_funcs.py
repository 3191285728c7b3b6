"""GR2's rewards as TRL reward functions, logging the reward-hacking monitors as they score.

TRL calls a reward function with the prompts, the completions and every other dataset column
(here ``candidate_sids`` and ``target_index``); it returns one float per completion. The same
call logs the step's format-valid rate, identity-permutation rate, mean rank gain, Kendall tau to
the input order and the identity's edge (what copying the input would have earned, minus the rollouts'
reward) through TRL's ``log_metric`` hook, so they appear in the trainer's log history beside the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gr2.rerank_format import ParsedAnswer, parse_answer
from rl.rewards import RewardKind, score_answer


def completion_text(completion: Any) -> str:
    """Conversational completions are message lists; plain ones are strings."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


class RerankReward:
    """Conditional (or naive) GR2 reward; ``__name__`` names it in TRL's logs."""

    def __init__(self, kind: RewardKind = "conditional", alpha: float = 0.2):
        self.kind = kind
        self.alpha = alpha
        self.__name__ = f"rerank_{kind}"

    def __call__(self, prompts: Sequence, completions: Sequence, candidate_sids: Sequence[Sequence[str]],
                 target_index: Sequence[int], log_metric: Callable[[str, float], None] | None = None,
                 **_: Any) -> list[float]:
        scored = [score_answer(parse_answer(completion_text(c), sids), int(t), self.kind, self.alpha)
                  for c, sids, t in zip(completions, candidate_sids, target_index, strict=True)]
        if log_metric is not None:
            log_metric("rerank/format_valid", float(np.mean([s.format_ok for s in scored])))
            log_metric("rerank/identity", float(np.mean([s.identity for s in scored])))
            log_metric("rerank/rank_gain", float(np.mean([s.pre_rank - s.new_rank for s in scored])))
            log_metric("rerank/unparseable", float(np.mean([s.unparseable for s in scored])))
            taus = [s.input_order_tau for s in scored if not s.unparseable]
            if taus:
                log_metric("rerank/input_order_tau", float(np.mean(taus)))
            # the incentive to copy: what the input order would have earned on the same prompts, minus what
            # the rollouts earned (> 0: copying beats the policy's own answers under this reward)
            copied = [score_answer(ParsedAnswer(list(range(len(sids))), valid=True), int(t), self.kind,
                                   self.alpha).reward for sids, t in zip(candidate_sids, target_index, strict=True)]
            log_metric("rerank/identity_edge", float(np.mean(copied) - np.mean([s.reward for s in scored])))
        return [s.reward for s in scored]
