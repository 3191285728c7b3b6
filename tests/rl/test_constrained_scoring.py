"""Constrained rollouts are scored under the constraint they were sampled with, on TRL's real trainer:
a negative advantage then cannot move the policy's mass onto tokens the constraint forbids."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import rl.constrained_rollouts
from gr2.answer_constraint import RerankAnswerConstraint
from gr2.rerank_format import THINK_CLOSE
from rl.constrained_rollouts import RolloutConstraint
from rl.dapo import rl_dataset
from rl.dynamic_sampling import DynamicSamplingGRPOTrainer
from rl.reward_funcs import RerankReward

G = 2  # completions per prompt
REASONING = 4  # reasoning tokens before the constraint closes </think>


def constrained_trainer(model_dir, catalog, examples, out_dir, unique: bool, **kwargs: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    dataset = rl_dataset(examples, catalog)
    budget = RerankAnswerConstraint(tok, dataset["candidate_sids"], 0, REASONING)
    # num_iterations=2: TRL computes old log-probs at generation time; beta > 0: reference log-probs too
    args = GRPOConfig(output_dir=str(out_dir), num_generations=G, per_device_train_batch_size=2 * G,
                      max_completion_length=max(budget.token_budget(r) for r in range(len(dataset))),
                      loss_type="dapo", beta=0.04, num_iterations=2, temperature=0.7, report_to=[], use_cpu=True,
                      max_steps=1)
    trainer = DynamicSamplingGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), processing_class=tok, reward_funcs=[RerankReward()],
        args=args, train_dataset=dataset, dynamic_sampling=False,
        rollout_constraint=RolloutConstraint(REASONING, unique), **kwargs)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before compute_loss
    return trainer, [dataset[i] for i in (0, 1) for _ in range(G)]


def replayed_mask(tok, inputs: list[dict], completion: torch.Tensor, live: torch.Tensor, vocab: int,
                  unique: bool) -> torch.Tensor:
    """The forbidden tokens at each live step, replayed with the constraint's per-prefix ``allowed`` (not the
    one-pass helper the trainer uses)."""
    constraint = RerankAnswerConstraint(tok, [row["candidate_sids"] for row in inputs], 0, REASONING, unique)
    forbidden = torch.zeros(*completion.shape, vocab, dtype=torch.bool)
    for r, t in live.nonzero().tolist():
        allowed = constraint.allowed(r, completion[r, :t].tolist())
        if allowed is None:
            forbidden[r, t, constraint.banned_in_reasoning] = True
        else:
            forbidden[r, t] = True
            forbidden[r, t, allowed] = False
    return forbidden


def loss_grad_on_logits(trainer, batch: dict) -> torch.Tensor:
    """d(DAPO loss)/d(raw model logits) at the completion steps, through TRL's own ``compute_loss``."""
    captured = []

    def keep(module, args, output):
        output.logits.retain_grad()
        captured.append(output.logits)

    handle = trainer.model.register_forward_hook(keep)
    try:
        trainer.model.zero_grad()
        trainer.compute_loss(trainer.model, batch).backward()
    finally:
        handle.remove()
    (logits,) = captured
    steps = batch["completion_ids"].shape[1]
    return logits.grad[:, -steps - 1:-1]


def scored(trainer, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, batch["completion_ids"].shape[1], compute_entropy=True)
    return logps, entropies


@pytest.mark.slow
@pytest.mark.parametrize("unique", [True, False], ids=["permutation", "candidates"])
def test_negative_advantage_pushes_no_mass_onto_forbidden_tokens(unique, tiny_sid_model, ml100k_catalog,
                                                                  ml100k_examples, tmp_path, monkeypatch):
    trainer, inputs = constrained_trainer(tiny_sid_model, ml100k_catalog, ml100k_examples[:8], tmp_path, unique)
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(inputs)
    completion, live = batch["completion_ids"], batch["completion_mask"].bool()
    assert live.any(dim=1).all()  # every rollout finished inside the budget
    vocab = trainer.model.config.vocab_size
    forbidden = replayed_mask(trainer.processing_class, inputs, completion, live, vocab, unique)
    constraint = trainer.rollout_constraint.for_prompts(trainer.processing_class, batch["prompt_ids"])
    assert torch.equal(rl.constrained_rollouts.forbidden_tokens(constraint, completion, live, vocab), forbidden)
    batch["advantages"] = -torch.ones_like(batch["advantages"])  # every rollout judged worse than its group

    # new, old and reference log-probs: all from the masked distribution
    logps, entropies = scored(trainer, batch)
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        torch.testing.assert_close(batch[key], logps)
    forced = (~forbidden).sum(-1) == 1  # a single allowed token: probability 1, nothing to learn
    assert forced.any() and (forced & live).sum() < live.sum()
    assert logps[forced & live].abs().max() < 1e-6 and entropies[forced & live].abs().max() < 1e-6

    grad = loss_grad_on_logits(trainer, batch)
    assert torch.count_nonzero(grad[forbidden]) == 0  # masked: forbidden logits are untouched
    assert grad[~forbidden & live.unsqueeze(-1)].abs().sum() > 0  # and the update does something

    # the unmasked computation (TRL's own distribution) would raise every forbidden logit
    trainer.rollout_constraint, constraint = None, trainer.rollout_constraint
    trl_logps, trl_entropies = scored(trainer, batch)  # TRL's fused LM head
    trainer.rollout_constraint = constraint
    monkeypatch.setattr(rl.constrained_rollouts, "forbidden_tokens",
                        lambda c, ids, live, vocab: torch.zeros(*ids.shape, vocab, dtype=torch.bool))
    plain_logps, plain_entropies = scored(trainer, batch)  # the same path as above, without the mask
    torch.testing.assert_close(plain_logps, trl_logps)
    torch.testing.assert_close(plain_entropies, trl_entropies)
    assert bool((logps >= plain_logps - 1e-6)[live].all())  # renormalised over the allowed tokens
    batch["old_per_token_logps"] = plain_logps
    batch["ref_per_token_logps"] = plain_logps
    unmasked = loss_grad_on_logits(trainer, batch)
    assert bool((unmasked[forbidden] < 0).all())  # a descent step would raise them all


@pytest.mark.slow
def test_reasoning_left_out_of_the_loss_stays_in_the_context(tiny_sid_model, ml100k_catalog, ml100k_examples,
                                                            tmp_path):
    """``loss_skips_until`` drops the reasoning from the loss through TRL's tool_mask; the completion_mask
    (also the loss forward's attention mask) keeps it, as the answer was sampled seeing it."""
    from transformers import AutoTokenizer

    close = AutoTokenizer.from_pretrained(tiny_sid_model).encode(THINK_CLOSE, add_special_tokens=False)
    trainer, inputs = constrained_trainer(tiny_sid_model, ml100k_catalog, ml100k_examples[:8], tmp_path, True,
                                          loss_skips_until=close)
    batch = trainer._generate_and_score_completions(inputs)
    completion, attended, in_loss = batch["completion_ids"], batch["completion_mask"], batch["tool_mask"]
    for row in range(completion.shape[0]):
        ids = completion[row].tolist()
        end = next(i for i in range(len(ids)) if ids[i:i + len(close)] == close) + len(close)
        assert attended[row, :end].all() and not in_loss[row, :end].any() and in_loss[row, end:].all()
    assert int(batch["num_items_in_batch"]) == int((attended * in_loss).sum())
