"""Stage-2 loss: assistant tokens only, reasoning tokens weighted lambda_r, ranking tokens lambda_o.

GR2 trains on teacher traces ``<think>reasoning</think>{"recommendations": [...]}`` but the ranking
is what is verified later, so reasoning tokens count less (lambda_r = 0.1 by default) than the
``</think>`` tag, the JSON ranking and the end-of-turn token (lambda_o = 1). The loss is the
weighted mean of token cross-entropies. Weights are assigned by character offsets of the rendered
chat, so BPE merges across the prompt/answer boundary cannot shift them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Ge, Gt
from trl import SFTTrainer

from gr2.rerank_format import THINK_CLOSE


@dataclass
class LossWeights:
    reasoning: Annotated[float, Ge(0)] = 0.1  # lambda_r
    ranking: Annotated[float, Gt(0)] = 1.0  # lambda_o


def encode_weighted_example(
    tokenizer, prompt_messages: Sequence[dict], answer: str, weights: LossWeights, max_length: int = 2048,
) -> dict[str, list]:
    """Token ids, labels (-100 outside the answer) and per-token loss weights for one conversation."""
    prompt = tokenizer.apply_chat_template(list(prompt_messages), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*prompt_messages, {"role": "assistant", "content": answer}],
                                         tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    answer_start = len(prompt)
    close = full.find(THINK_CLOSE, answer_start)
    ranking_start = close if close != -1 else answer_start  # no reasoning: everything is ranking
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if len(ids) > max_length:
        raise ValueError(f"example has {len(ids)} tokens, more than max_length={max_length}")
    labels, loss_weights = [], []
    for token_id, (start, end) in zip(ids, offsets, strict=True):
        if end <= answer_start:
            labels.append(-100)
            loss_weights.append(0.0)
        else:
            labels.append(token_id)
            loss_weights.append(weights.ranking if start >= ranking_start else weights.reasoning)
    return {"input_ids": ids, "labels": labels, "loss_weights": loss_weights}


@dataclass
class WeightedCompletionCollator:
    """Pads input ids, labels and loss weights on the right (training batches)."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)

        def pad(key: str, value, dtype):
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples], dtype=dtype)

        input_ids = pad("input_ids", self.pad_token_id, torch.long)
        attention = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples])
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": pad("labels", -100, torch.long),
            "loss_weights": pad("loss_weights", 0.0, torch.float32),
        }


def _shifted_weights(labels: torch.Tensor, loss_weights: torch.Tensor) -> torch.Tensor:
    """Weights of the next-token predictions: position t predicts token t+1, ignored labels weigh 0."""
    return loss_weights[:, 1:] * (labels[:, 1:] != -100)


def weighted_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss_weights: torch.Tensor, total_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """sum(w * CE) / W over next-token predictions (position t predicts token t+1).

    W is this batch's own weight sum unless ``total_weight`` gives another (the weight of every
    micro-batch of an accumulated step, so that their gradients add up to the full batch's).
    """
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    w = _shifted_weights(labels, loss_weights)
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.clamp(min=0).reshape(-1), reduction="none"
    ).view_as(w)
    denominator = w.sum() if total_weight is None else torch.as_tensor(total_weight, device=w.device)
    return (ce * w).sum() / denominator.clamp(min=1e-8)


class WeightedSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with GR2's reasoning/ranking token weights.

    Expects a pre-tokenized dataset from ``encode_weighted_example`` (TRL then skips its own
    tokenization), ``remove_unused_columns=False`` so ``loss_weights`` reach the batch, and
    ``WeightedCompletionCollator`` as ``data_collator``.

    Gradient accumulation: the Trainer hands every micro-batch of an optimizer step the
    ``num_items_in_batch`` it counted over all of them. Here that count is replaced by the total
    loss weight of the step (``get_batch_samples``), each micro-batch divides its weighted sum by
    it, and ``loss_is_scaled_for_ga`` tells the Trainer not to divide again: accumulation 4 x batch 2
    gives the gradients of one batch of 8.
    """

    loss_is_scaled_for_ga = True

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """The micro-batches of one optimizer step and their total loss weight (over every rank)."""
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batch_samples:
            return batch_samples, None
        total = sum(_shifted_weights(b["labels"], b["loss_weights"]).sum() for b in batch_samples).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return batch_samples, total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_weights = inputs.pop("loss_weights")
        labels = inputs.pop("labels")
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        if not model.training or num_items_in_batch is None:
            # Evaluation (the Trainer's count there is of labels, not weights) or a batch outside the
            # training loop: the batch's own weighted mean, shared out over the accumulation steps.
            loss = weighted_token_loss(outputs.logits, labels, loss_weights)
            if model.training:
                loss = loss / getattr(self, "current_gradient_accumulation_steps", 1)
            return (loss, outputs) if return_outputs else loss
        loss = weighted_token_loss(outputs.logits, labels, loss_weights, total_weight=num_items_in_batch)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.accelerator.num_processes  # the total is every rank's; DDP averages gradients
        return (loss, outputs) if return_outputs else loss
