"""DAPO's dynamic sampling on top of TRL's ``GRPOTrainer``, without forking it.

A group whose completions all earn the same reward has zero advantage and teaches nothing, yet it
still dilutes DAPO's token-level loss. DAPO drops such groups and refills the batch with fresh
prompts before the update. TRL does not, so this subclass wraps the one method that produces a
scored generation batch: it calls TRL's own implementation, keeps the informative groups, asks for
more on fresh prompts until the batch is full again (at most ``max_refill_rounds`` times), and
stitches the pieces back into the shape TRL expects.

Whether a group is informative is decided on one reward function's values (``informative_reward``:
the rank reward), not on the summed reward: the soft overlong punishment differs with length, so a
group whose rankings all earned the same reward would otherwise be kept, and TRL's per-group std
scaling (``scale_rewards="group"``) would blow those small length differences up to unit-size
advantages. The advantages themselves stay TRL's.

Groups of ``num_generations`` completions must be contiguous within a process's batch, which holds
when the per-process generation batch is a multiple of ``num_generations`` (TRL's own requirement).
All processes refill in lock step, so distributed runs stay in sync; each draws its fresh prompts
in its own order (``refill_order``), so two ranks do not refill with the same prompts.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from trl import GRPOTrainer

from rl.constrained_rollouts import ConstrainedScoringMixin, RolloutConstraint, constrain_rollouts


def _pad_to(t: torch.Tensor, width: int, left: bool, value: int | float) -> torch.Tensor:
    missing = width - t.shape[1]
    if missing <= 0:
        return t
    pad = torch.full((t.shape[0], missing, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def _per_sample(value: Any, size: int) -> bool:
    """Whether a batch entry has one row per completion (the rest are scalars or metadata)."""
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size


def concat_batches(parts: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate scored batches along the sample axis, padding prompts left and completions right."""
    out: dict[str, Any] = {}
    n = sum(p["advantages"].shape[0] for p in parts)
    for key, first in parts[0].items():
        if not _per_sample(first, parts[0]["advantages"].shape[0]):
            out[key] = first  # scalars and metadata: recomputed or shared below
            continue
        tensors = [p[key] for p in parts]
        if first.dim() >= 2:
            width = max(t.shape[1] for t in tensors)
            left = key.startswith("prompt")
            value = pad_token_id if key.endswith("_ids") else 0
            tensors = [_pad_to(t, width, left, value) for t in tensors]
        out[key] = torch.cat(tensors, dim=0)
    assert out["advantages"].shape[0] == n
    return out


def select_rows(batch: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    size = batch["advantages"].shape[0]
    return {k: (v[rows] if _per_sample(v, size) else v) for k, v in batch.items()}


def prefix_through(ids: torch.Tensor, marker: list[int]) -> torch.Tensor:
    """Per row, True up to and including the first occurrence of the ``marker`` id sequence (all
    False where it does not occur)."""
    n = len(marker)
    if ids.shape[1] < n:
        return torch.zeros_like(ids, dtype=torch.bool)
    hits = torch.ones(ids.shape[0], ids.shape[1] - n + 1, dtype=torch.bool, device=ids.device)
    for i, token in enumerate(marker):
        hits &= ids[:, i:ids.shape[1] - n + 1 + i] == token
    ends = torch.where(hits.any(dim=1), hits.float().argmax(dim=1) + n, 0)
    return torch.arange(ids.shape[1], device=ids.device)[None, :] < ends[:, None]


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per group of ``group_size`` consecutive completions: whether their rewards were not all equal (a group
    with a NaN, i.e. unscorable, reward counts as uninformative)."""
    grouped = rewards.view(-1, group_size)
    return (grouped.amax(dim=1) - grouped.amin(dim=1)) > 1e-6


def refill_order(size: int, seed: int, process_index: int) -> list[int]:
    """The order in which one process draws fresh prompts: seeded by the run's seed and the process, so
    ranks refill with different prompts and a rerun refills with the same ones."""
    return np.random.default_rng([seed, process_index]).permutation(size).tolist()


class DynamicSamplingGRPOTrainer(ConstrainedScoringMixin, GRPOTrainer):
    """``GRPOTrainer`` that drops zero-variance groups and refills them with fresh prompts, can leave each
    completion's reasoning (through ``loss_skips_until``) out of the loss, and with ``rollout_constraint``
    decodes rollouts under the rerank answer constraint and scores them under it
    (``rl.constrained_rollouts``)."""

    def __init__(self, *args: Any, dynamic_sampling: bool = True, max_refill_rounds: int = 4,
                 refill_seed: int = 0, loss_skips_until: list[int] | None = None,
                 informative_reward: str | None = None, rollout_constraint: RolloutConstraint | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.max_refill_rounds = max_refill_rounds
        # token ids ending the part of a completion left out of the loss (e.g. "</think>": the reward
        # judges only the ranking, so the reasoning would get its advantage with no bearing on it)
        self.loss_skips_until = loss_skips_until
        # the reward function (by TRL name) whose values decide which groups are informative; None: the sum
        if informative_reward is not None and informative_reward not in self.reward_func_names:
            raise ValueError(f"informative_reward {informative_reward!r} is not one of the reward functions "
                             f"{self.reward_func_names}")
        self.informative_reward = informative_reward
        self._rewards_per_func: torch.Tensor | None = None
        order = refill_order(len(self.train_dataset), refill_seed, self.accelerator.process_index)
        self._fresh_prompts = itertools.cycle(order)
        if rollout_constraint is not None:
            if self.use_vllm or getattr(self, "use_transformers_continuous_batching", False):
                raise ValueError("rollout_constraint applies to transformers' generate; vLLM and continuous "
                                 "batching rollouts would not be decoded under it")
            constrain_rollouts(self.accelerator.unwrap_model(self.model), self.processing_class,
                               rollout_constraint.max_reasoning_tokens, rollout_constraint.unique)
        self.rollout_constraint = rollout_constraint

    def _calculate_rewards(self, inputs: list[dict[str, Any]], prompts: list, completions: list,
                           completion_ids_list: list[list[int]]) -> torch.Tensor:
        """TRL's rewards, gathered across processes (one column per reward function), kept for dynamic sampling."""
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _score(self, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], torch.Tensor]:
        """TRL's scored batch, and whether each of its groups is informative."""
        self._rewards_per_func = None
        batch = super()._generate_and_score_completions(inputs)
        if self.informative_reward is None:
            return batch, informative_groups(batch["advantages"], self.num_generations)
        if self._rewards_per_func is None:
            raise RuntimeError("TRL scored a batch without _calculate_rewards: cannot read the rank reward")
        n = batch["advantages"].shape[0]  # TRL keeps this process's rows, in the gathered order
        rows = slice(self.accelerator.process_index * n, (self.accelerator.process_index + 1) * n)
        column = self.reward_func_names.index(self.informative_reward)
        return batch, informative_groups(self._rewards_per_func[rows, column], self.num_generations)

    def _fresh_inputs(self, groups: int) -> list[dict[str, Any]]:
        rows = [self.train_dataset[next(self._fresh_prompts)] for _ in range(groups)]
        return [row for row in rows for _ in range(self.num_generations)]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self._sample_groups(inputs)
        if self.loss_skips_until:
            # TRL's tool_mask leaves tokens out of the loss but not out of the context: the completion_mask is
            # also the attention mask of the loss forward, and the answer was sampled seeing its reasoning
            skip = prefix_through(batch["completion_ids"], self.loss_skips_until)
            batch["tool_mask"] = batch.get("tool_mask", 1) * (~skip).to(batch["completion_mask"].dtype)
            batch["num_items_in_batch"] = self._loss_tokens(batch)
        return batch

    def _loss_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """Completion tokens in the loss, over all processes (TRL's ``num_items_in_batch``)."""
        mask = batch["completion_mask"] * batch.get("tool_mask", 1)
        return self.accelerator.gather(mask.sum()).sum()

    def _sample_groups(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        batch, keep = self._score(inputs)
        if not self.dynamic_sampling or self.model is None or not self.model.training:
            return batch
        g = self.num_generations
        total_groups = batch["advantages"].shape[0] // g
        pieces, kept, dropped, seen = [], int(keep.sum()), int((~keep).sum()), total_groups
        pieces.append((batch, keep))
        rounds = 0
        while rounds < self.max_refill_rounds:
            # every process refills while any process still lacks groups (generation gathers across ranks)
            deficit = torch.tensor(total_groups - kept, device=self.accelerator.device)
            if self.accelerator.gather(deficit).max().item() <= 0:
                break
            rounds += 1
            more, more_keep = self._score(self._fresh_inputs(total_groups))
            seen += total_groups
            dropped += int((~more_keep).sum())
            kept += int(more_keep.sum())
            pieces.append((more, more_keep))
        # informative groups first, then (only if refills ran out) uninformative ones to keep the shape; those
        # teach nothing about the ranking, so their advantages (TRL's std scaling can inflate tiny differences
        # in the other rewards, e.g. the overlong punishment) are zeroed
        for part, mask in pieces:
            advantages = part["advantages"].clone()
            advantages.view(-1, g)[~mask.to(advantages.device)] = 0.0
            part["advantages"] = advantages
        ordered = pieces + [(b, ~k) for b, k in pieces]
        chosen, count = [], 0
        for part, mask in ordered:
            for group in torch.nonzero(mask).flatten().tolist():
                if count == total_groups:
                    break
                chosen.append((part, group))
                count += 1
        stitched = []
        for part, _ in pieces:
            groups = [grp for p, grp in chosen if p is part]
            if groups:
                rows = torch.tensor([grp * g + j for grp in groups for j in range(g)],
                                    device=part["advantages"].device)
                stitched.append(select_rows(part, rows))
        pad_id = self.processing_class.pad_token_id
        out = concat_batches(stitched, pad_id if pad_id is not None else 0)
        out["num_items_in_batch"] = self._loss_tokens(out)
        mode = "train"
        self._metrics[mode]["dynamic_sampling/dropped_group_share"].append(dropped / max(seen, 1))
        self._metrics[mode]["dynamic_sampling/refill_rounds"].append(float(rounds))
        return out
