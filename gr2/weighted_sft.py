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
    # The first ``picks`` entries of the ranking weigh ``picks_weight`` instead of lambda_o. A teacher that promotes
    # a few candidates and keeps the rest in pre-rank order puts every decision there; the copied tail is most of
    # the tokens, and a student trained on the plain mean copies the whole list (first place changed 0.1% on
    # Games) before it learns the picks.
    picks: Annotated[int, Ge(0)] = 0
    picks_weight: Annotated[float, Gt(0)] = 1.0


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
    picks_end = _end_of_entry(full, ranking_start, weights.picks)
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
            loss_weights.append(weights.reasoning if start < ranking_start
                                else weights.picks_weight if start < picks_end else weights.ranking)
    return {"input_ids": ids, "labels": labels, "loss_weights": loss_weights}


def _end_of_entry(text: str, ranking_start: int, entries: int) -> int:
    """Character offset just past the ``entries``-th entry of the answer's list (its closing quote);
    ``ranking_start`` when ``entries`` is 0 or there is no list, so no token counts as a pick."""
    start = text.find("[", ranking_start)
    if start == -1 or entries == 0:
        return ranking_start
    end = start
    for _ in range(entries):
        opening = text.find('"', end + 1)
        closing = text.find('"', opening + 1) if opening != -1 else -1
        if closing == -1:
            break
        end = closing
    return end + 1


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


LARGE_VOCAB = 65_536  # vocabularies whose output layer is worth running on the loss positions only


def selected_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, select: torch.Tensor,
                    min_vocab: int = LARGE_VOCAB) -> torch.Tensor | None:
    """Next-token logits at the ``select``-ed positions only, (N, vocabulary); None for a model this shortcut
    does not cover (the caller then runs the full forward).

    ``select`` is (batch, length - 1): position t predicts token t + 1. The loss only counts answer tokens, a
    few dozen of a rerank prompt's hundreds, and the output layer over a large vocabulary (Gemma's 262k rows)
    costs more than the rest of the model: scoring only the answer's positions makes a step several times
    cheaper, with the same loss and gradients. The head is the model's own output module, so PEFT's
    trainable token rows (tied to the embedding) count as they do in the full forward. Models with fewer than
    ``min_vocab`` rows (0: any) keep the full forward."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return None  # calling the unwrapped backbone would skip DDP's forward, so no gradient all-reduce
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if getattr(config, "logit_scale", None) or getattr(config, "logits_scaling", None):
        return None  # heads that scale their logits: leave them to the model's own forward
    if min_vocab and base.get_output_embeddings().weight.shape[0] < min_vocab:
        return None  # a small vocabulary's head is cheap: the full forward is as fast
    try:
        backbone = base.get_decoder()
    except (AttributeError, ValueError):
        return None
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    logits = base.get_output_embeddings()(hidden[:, :-1][select])
    cap = getattr(config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def weighted_selected_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                           loss_weights: torch.Tensor, total_weight: torch.Tensor | None = None,
                           min_vocab: int = LARGE_VOCAB) -> torch.Tensor | None:
    """``weighted_token_loss`` with the output layer run on the weighted positions only (``selected_logits``);
    None where that shortcut does not apply."""
    w = _shifted_weights(labels, loss_weights)
    select = w > 0
    logits = selected_logits(model, input_ids, attention_mask, select, min_vocab)
    if logits is None:
        return None
    ce = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][select], reduction="none")
    denominator = w.sum() if total_weight is None else torch.as_tensor(total_weight, device=w.device)
    return (ce * w[select]).sum() / denominator.clamp(min=1e-8)


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
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if model.training and num_items_in_batch is not None and not return_outputs:
            # the training step: the output layer only where the loss counts (selected_logits)
            loss = weighted_selected_loss(model, ids, mask, labels, loss_weights, total_weight=num_items_in_batch)
            if loss is not None:
                return self._scale_for_ranks(loss)
        outputs = model(input_ids=ids, attention_mask=mask, use_cache=False)
        if not model.training or num_items_in_batch is None:
            # Evaluation (the Trainer's count there is of labels, not weights) or a batch outside the
            # training loop: the batch's own weighted mean, shared out over the accumulation steps.
            loss = weighted_token_loss(outputs.logits, labels, loss_weights)
            if model.training:
                loss = loss / getattr(self, "current_gradient_accumulation_steps", 1)
            return (loss, outputs) if return_outputs else loss
        loss = self._scale_for_ranks(weighted_token_loss(outputs.logits, labels, loss_weights,
                                                         total_weight=num_items_in_batch))
        return (loss, outputs) if return_outputs else loss

    def _scale_for_ranks(self, loss: torch.Tensor) -> torch.Tensor:
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.accelerator.num_processes  # the total is every rank's; DDP averages gradients
        return loss
