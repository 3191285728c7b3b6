"""DAPO's dynamic sampling on top of TRL's ``GRPOTrainer``, without forking it.

A group whose completions all earn the same reward has zero advantage and teaches nothing, yet it
still dilutes DAPO's token-level loss. DAPO drops such groups and refills the batch with fresh
prompts before the update. TRL does not, so this subclass wraps the one method that produces a
scored generation batch: it calls TRL's own implementation, keeps the informative groups, asks for
more on fresh prompts until the batch is full again (at most ``max_refill_rounds`` times), and
stitches the pieces back into the shape TRL expects.

Groups of ``num_generations`` completions must be contiguous within a process's batch, which holds
when the per-process generation batch is a multiple of ``num_generations`` (TRL's own requirement).
All processes refill in lock step, so distributed runs stay in sync.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from trl import GRPOTrainer


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


class DynamicSamplingGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that drops zero-variance groups and refills them with fresh prompts, and can
    leave each completion's reasoning (through ``loss_skips_until``) out of the loss."""

    def __init__(self, *args: Any, dynamic_sampling: bool = True, max_refill_rounds: int = 4,
                 refill_seed: int = 0, loss_skips_until: list[int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.max_refill_rounds = max_refill_rounds
        # token ids ending the part of a completion left out of the loss (e.g. "</think>": the reward
        # judges only the ranking, so the reasoning would get its advantage with no bearing on it)
        self.loss_skips_until = loss_skips_until
        order = np.random.default_rng(refill_seed).permutation(len(self.train_dataset))
        self._fresh_prompts = itertools.cycle(order.tolist())

    def _informative_groups(self, batch: dict[str, Any]) -> torch.Tensor:
        """Per group: whether its advantages differ from zero (i.e. its rewards were not all equal)."""
        adv = batch["advantages"].view(-1, self.num_generations)
        return adv.abs().amax(dim=1) > 1e-6

    def _fresh_inputs(self, groups: int) -> list[dict[str, Any]]:
        rows = [self.train_dataset[next(self._fresh_prompts)] for _ in range(groups)]
        return [row for row in rows for _ in range(self.num_generations)]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self._sample_groups(inputs)
        if self.loss_skips_until:
            mask = batch["completion_mask"] * ~prefix_through(batch["completion_ids"], self.loss_skips_until)
            batch["completion_mask"] = mask
            batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        return batch

    def _sample_groups(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super()._generate_and_score_completions(inputs)
        if not self.dynamic_sampling or self.model is None or not self.model.training:
            return batch
        g = self.num_generations
        total_groups = batch["advantages"].shape[0] // g
        keep = self._informative_groups(batch)
        pieces, kept, dropped, seen = [], int(keep.sum()), int((~keep).sum()), total_groups
        pieces.append((batch, keep))
        rounds = 0
        while rounds < self.max_refill_rounds:
            # every process refills while any process still lacks groups (generation gathers across ranks)
            deficit = torch.tensor(total_groups - kept, device=self.accelerator.device)
            if self.accelerator.gather(deficit).max().item() <= 0:
                break
            rounds += 1
            more = super()._generate_and_score_completions(self._fresh_inputs(total_groups))
            more_keep = self._informative_groups(more)
            seen += total_groups
            dropped += int((~more_keep).sum())
            kept += int(more_keep.sum())
            pieces.append((more, more_keep))
        # informative groups first, then (only if refills ran out) uninformative ones to keep the shape
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
        mask = out["completion_mask"]
        out["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        mode = "train"
        self._metrics[mode]["dynamic_sampling/dropped_group_share"].append(dropped / max(seen, 1))
        self._metrics[mode]["dynamic_sampling/refill_rounds"].append(float(rounds))
        return out
