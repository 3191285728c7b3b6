"""GRPO training of the actor against the real tiny solver: it runs, writes its curves and actor, resumes
after a kill exactly where an uninterrupted run would be, and never trains on another split."""

from __future__ import annotations

import json

import pytest
import torch

from gr2.rerank_format import ParsedAnswer
from hilight.actor import EmphasisActor
from hilight.config import ActorConfig, HiLightConfig, HiLightTrainingConfig
from hilight.solver import CachedSolver, GR2Solver, solver_reward
from hilight.train import HiLightTrainer
from tests.hilight.conftest import SOLVER_SETTINGS

TRAINING = dict(masks_per_example=4, examples_per_step=4, save_steps=2, eval_steps=2, select_users=8, seed=0)


def make_trainer(tiny_sid_model, catalog, train, valid, out, max_steps: int) -> HiLightTrainer:
    """A fresh actor and a fresh solver cache: what a new process would have."""
    torch.manual_seed(0)
    actor = EmphasisActor.from_backbone(tiny_sid_model, ActorConfig())
    config = HiLightConfig(training=HiLightTrainingConfig(max_steps=max_steps, **TRAINING))
    solver = CachedSolver(GR2Solver(tiny_sid_model, catalog, SOLVER_SETTINGS))
    return HiLightTrainer(actor, solver, catalog, train, valid, out, config)


def test_reward_is_hr5_and_ndcg5_and_zero_when_unparseable():
    def answer(order, fallback=False):
        return ParsedAnswer(order, fallback=fallback)

    assert solver_reward(answer([3, 0, 1, 2]), 3) == pytest.approx(1.0)
    assert solver_reward(answer([0, 1, 2, 3, 4, 5]), 4) == pytest.approx(0.7 + 0.3 / 2.584962500721156)
    assert solver_reward(answer([0, 1, 2, 3, 4, 5]), 5) == 0.0
    assert solver_reward(answer([0, 1, 2], fallback=True), 0) == 0.0


def test_trains_on_the_train_split_only(tiny_sid_model, ml100k_catalog, hl_train, hl_valid, tmp_path):
    with pytest.raises(ValueError, match="train split only"):
        make_trainer(tiny_sid_model, ml100k_catalog, hl_train[:4] + hl_valid[:1], hl_valid, tmp_path, 1)


@pytest.mark.slow
def test_training_writes_its_actor_and_resumes_exactly_after_a_kill(tiny_sid_model, ml100k_catalog, hl_train,
                                                                    hl_valid, tmp_path):
    whole = make_trainer(tiny_sid_model, ml100k_catalog, hl_train, hl_valid, tmp_path / "whole", 4)
    metrics = whole.train(progress=False)
    out = tmp_path / "whole"
    for name in ("actor/actor.pt", "actor/actor_config.json", "metrics.json", "curve-reward.png",
                 "curve-kept-share.png", "curve-spans.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert [e["step"] for e in metrics["evals"]] == [0, 2, 4]
    saved = json.loads((out / "actor" / "actor_config.json").read_text())
    assert saved["selection"] == metrics["best"] and saved["budget"]["share"] == 0.25
    history = metrics["history"]
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    for record in history:
        assert 0 <= record["reward"] <= 1 and 0 < record["kept_share"] <= 0.25
        assert 0 < record["spans_per_example"] <= 5
    # a 4-example group whose masks all agree has zero advantage; different masks must be drawn somewhere
    assert any(r["reward_std_in_group"] > 0 for r in history) or any(r["spans_per_example"] != 1 for r in history)

    # killed after step 2 (its checkpoint written), then run again to 4 in a new process
    first = make_trainer(tiny_sid_model, ml100k_catalog, hl_train, hl_valid, tmp_path / "killed", 2)
    first.train(progress=False)
    resumed = make_trainer(tiny_sid_model, ml100k_catalog, hl_train, hl_valid, tmp_path / "killed", 4)
    again = resumed.train(progress=False)
    keys = ("reward", "plain_reward", "kept_share", "spans_per_example", "loss")
    assert [[r[k] for k in keys] for r in again["history"]] == [[r[k] for k in keys] for r in history]
    for name, value in whole.actor.trainable_state().items():
        assert torch.allclose(value, resumed.actor.trainable_state()[name], atol=1e-6), name


def test_ranking_log_prob_is_plackett_luce():
    """Whole rankings of 3 units sum to probability 1; a first draw is the softmax; the gradient flows."""
    from itertools import permutations

    from hilight.train import ranking_log_prob

    logits = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    total = sum(ranking_log_prob(logits, torch.tensor(p)).exp() for p in permutations(range(3)))
    assert total.item() == pytest.approx(1.0)
    first = ranking_log_prob(logits, torch.tensor([2]))
    assert first.item() == pytest.approx(torch.log_softmax(logits, 0)[2].item())
    first.backward()
    assert logits.grad[2] > 0 and logits.grad[0] < 0 and logits.grad[1] < 0
    assert ranking_log_prob(logits, torch.tensor([], dtype=torch.long)).item() == 0.0
