"""Learning sanity: on a reward a tiny actor can learn in seconds, GRPO must actually learn it.

A wrong sign, log-probs taken over the sampled instead of the rendered mask, or a gradient that never
reaches the head all pass shape tests; they do not pass this one. The solver here is a rule, not a
model: it lifts the target from last place to first exactly when an emphasised span mentions a 1995
film, so the only way to reward is to emphasise those items (the tiny model as solver answers
arbitrarily; there is no known emphasis for it to learn). Selection users are valid-split users the
actor never trained on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from gr2.rerank_data import RerankExample
from gr2.rerank_format import EMPHASIS_CLOSE, EMPHASIS_OPEN, ParsedAnswer
from hilight.actor import EmphasisActor
from hilight.config import ActorConfig, HiLightConfig, HiLightTrainingConfig
from hilight.train import HiLightTrainer

KEY = "(1995)"
TAGGED = re.compile(f"{re.escape(EMPHASIS_OPEN)}(.*?){re.escape(EMPHASIS_CLOSE)}", re.S)


class KeywordSolver:
    """Reverses the candidates when an emphasised span contains ``KEY``; keeps the pre-rank order otherwise."""

    name = "rule: emphasised 1995 film -> reversed order"

    def answer(self, conversations: Sequence[list[dict[str, str]]], candidate_sids: Sequence[Sequence[str]],
               progress: bool = False) -> list[ParsedAnswer]:
        out = []
        for conversation, sids in zip(conversations, candidate_sids, strict=True):
            hit = any(KEY in span for span in TAGGED.findall(conversation[-1]["content"]))
            order = list(range(len(sids)))
            out.append(ParsedAnswer(order[::-1] if hit else order, valid=True))
        return out

    def close(self) -> None:
        pass


def keyword_examples(ds, catalog, split: str, users: range, count: int) -> list[RerankExample]:
    """Users with 1-3 films of 1995 among their last 10; the target is the pre-ranker's last candidate."""
    cut = {"train": 3, "valid": 2}[split]
    rng = np.random.default_rng(len(split))
    out = []
    for user in users:
        seq = ds.sequences[user]
        history = seq[:-cut][-10:].tolist()
        if not 1 <= sum(KEY in catalog.titles[i] for i in history) <= 3:
            continue
        pool = np.setdiff1d(np.arange(ds.num_items), seq)
        out.append(RerankExample(user, history, [*rng.choice(pool, 9, replace=False).tolist(), int(seq[-cut])],
                                 int(seq[-cut]), split))
        if len(out) == count:
            break
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sampling", ["bernoulli", "ranked"])
def test_grpo_learns_to_emphasise_what_the_solver_rewards(tiny_sid_model, ml100k, ml100k_catalog, tmp_path,
                                                          sampling):
    train = keyword_examples(ml100k, ml100k_catalog, "train", range(0, 600), 160)
    valid = keyword_examples(ml100k, ml100k_catalog, "valid", range(600, 943), 40)
    assert len(train) == 160 and len(valid) == 40
    torch.manual_seed(0)
    actor = EmphasisActor.from_backbone(tiny_sid_model, ActorConfig())
    training = HiLightTrainingConfig(max_steps=40, examples_per_step=8, masks_per_example=4, learning_rate=3e-3,
                                     backbone_learning_rate=1e-3, eval_steps=20, save_steps=40, select_users=0,
                                     sampling=sampling)
    trainer = HiLightTrainer(actor, KeywordSolver(), ml100k_catalog, train, valid, tmp_path,
                             HiLightConfig(training=training))
    metrics = trainer.train(progress=False)
    before, after = metrics["evals"][0]["valid_reward"], metrics["best"]["valid_reward"]
    assert metrics["evals"][0]["valid_plain_reward"] == 0.0  # without emphasis the target stays last
    assert after >= 0.75 and after - before >= 0.3, metrics["evals"]  # measured 0.30 -> 0.90 (bernoulli), 1.00 (ranked)
