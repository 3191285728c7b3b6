"""Stage-2 token weights: where they fall, what the loss is, and that TRL trains with them."""

from __future__ import annotations

import copy

import pytest
import torch

from gr2.base_model import build_tiny_model
from gr2.rerank_format import PromptItem, build_messages, format_answer
from gr2.weighted_sft import (
    LossWeights,
    WeightedCompletionCollator,
    WeightedSFTTrainer,
    encode_weighted_example,
    weighted_selected_loss,
    weighted_token_loss,
)
from tests.conftest import small_model_config

SMALL = small_model_config()
SIDS = [f"<|sid_begin|><s_a_{i}><|sid_end|>" for i in range(4)]


@pytest.fixture(scope="module")
def tiny(ml100k):
    return build_tiny_model(ml100k.item_texts(), SMALL)


def conversation(i: int):
    items = [PromptItem(s, f"Movie {j}") for j, s in enumerate(SIDS)]
    answer = format_answer(f"the user likes movie {i}", [SIDS[i], *[s for s in SIDS if s != SIDS[i]]])
    return build_messages(items[:2], items), answer


def test_weights_follow_the_answer_structure(tiny):
    _, tok = tiny
    messages, answer = conversation(0)
    enc = encode_weighted_example(tok, messages, answer, LossWeights(0.1, 1.0))
    text_of = lambda pred: tok.decode([t for t, w in zip(enc["input_ids"], enc["loss_weights"], strict=True)  # noqa
                                       if pred(w)])
    assert "Rank all candidates" in tok.decode(enc["input_ids"])
    assert "Rank all candidates" not in text_of(lambda w: w > 0)
    assert "the user likes movie 0" in text_of(lambda w: w == pytest.approx(0.1))
    ranking = text_of(lambda w: w == 1.0)
    assert ranking.startswith("</think>") and '"recommendations"' in ranking and ranking.endswith("<|im_end|>\n")
    assert all((lab == -100) == (w == 0) for lab, w in zip(enc["labels"], enc["loss_weights"], strict=True))


def test_the_first_entries_of_the_ranking_can_weigh_more(tiny):
    _, tok = tiny
    messages, answer = conversation(1)
    enc = encode_weighted_example(tok, messages, answer, LossWeights(0.1, 1.0, picks=2, picks_weight=4.0))
    weighted = [(t, w) for t, w in zip(enc["input_ids"], enc["loss_weights"], strict=True)]
    picks = tok.decode([t for t, w in weighted if w == 4.0])
    first, second, third = SIDS[1], SIDS[0], SIDS[2]  # conversation(1) ranks SIDS[1] first, then the rest in order
    assert first in picks and second in picks and third not in picks
    assert third in tok.decode([t for t, w in weighted if w == 1.0])
    assert "the user likes movie 1" in tok.decode([t for t, w in weighted if w == pytest.approx(0.1)])
    plain = encode_weighted_example(tok, messages, answer, LossWeights(0.1, 1.0))
    assert 4.0 not in plain["loss_weights"]


def test_weighted_loss_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, 3, 5, 1]])
    weights = torch.tensor([[0.0, 0.1, 1.0, 1.0]])
    logp = logits.log_softmax(-1)
    ce = [-logp[0, 0, 3], -logp[0, 1, 5], -logp[0, 2, 1]]
    expected = (0.1 * ce[0] + ce[1] + ce[2]) / 2.1
    torch.testing.assert_close(weighted_token_loss(logits, labels, weights), expected)


def test_loss_on_the_answer_positions_alone_equals_the_full_loss(ml100k):
    """The output layer run on the weighted positions only (what a 262k-row vocabulary needs) gives the full
    forward's loss and gradients."""
    model, tok = build_tiny_model(ml100k.item_texts(), SMALL)
    rows = [encode_weighted_example(tok, *conversation(i), LossWeights(0.1, 1.0)) for i in range(4)]
    batch = WeightedCompletionCollator(tok.pad_token_id)(rows)
    args = batch["input_ids"], batch["attention_mask"], batch["labels"], batch["loss_weights"]
    full = weighted_token_loss(model(input_ids=args[0], attention_mask=args[1]).logits, *args[2:])
    full.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    selected = weighted_selected_loss(model, *args, min_vocab=0)
    selected.backward()
    torch.testing.assert_close(selected, full)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], msg=lambda m, n=name: f"{n}: {m}")
    assert weighted_selected_loss(model, *args) is None  # a small vocabulary keeps the full forward


@pytest.mark.slow
def test_trainer_learns_the_ranking(tiny, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig

    model, tok = tiny
    rows = [encode_weighted_example(tok, *conversation(i % 4), LossWeights()) for i in range(32)]
    args = SFTConfig(output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=8, learning_rate=3e-3,
                     remove_unused_columns=False, report_to=[], logging_steps=5, save_strategy="no", use_cpu=True)
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tok, data_collator=WeightedCompletionCollator(tok.pad_token_id))
    batch = WeightedCompletionCollator(tok.pad_token_id)(rows[:4])
    with torch.no_grad():
        before = weighted_token_loss(model(input_ids=batch["input_ids"]).logits, batch["labels"], batch["loss_weights"])
    trainer.train()
    with torch.no_grad():
        after = weighted_token_loss(model(input_ids=batch["input_ids"]).logits, batch["labels"], batch["loss_weights"])
    assert after < before * 0.5


def _step_gradients(tiny, rows, tmp_path, batch_size: int, accumulation: int) -> dict[str, torch.Tensor]:
    """Gradients that reach the optimizer in the first step of a WeightedSFTTrainer run."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig

    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    grads: dict[str, torch.Tensor] = {}

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if not grads:
                grads.update({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    args = SFTConfig(output_dir=str(tmp_path / f"{batch_size}x{accumulation}"), max_steps=1,
                     per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                     learning_rate=1e-3, max_grad_norm=0.0, remove_unused_columns=False, report_to=[],
                     save_strategy="no", use_cpu=True, bf16=False, seed=0)
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                                 data_collator=WeightedCompletionCollator(tok.pad_token_id), callbacks=[Capture()])
    trainer.train()
    return grads


def test_gradient_accumulation_gives_the_full_batch_gradient(tiny, tmp_path):
    """Accumulation 4 x batch 2 and 1 x batch 8 step with the gradient of one weighted mean over all 8.

    The rows differ in length and in their share of reasoning tokens, so micro-batches have unequal
    weight sums: normalising each by its own sum (or summing them unscaled) would not match.
    """
    model, tok = tiny
    rows = []
    for i in range(8):
        messages, _ = conversation(i % 4)
        order = [SIDS[i % 4], *[s for s in SIDS if s != SIDS[i % 4]]]
        answer = format_answer(" ".join(["the user likes movie", str(i)] * (1 + 3 * (i % 3))), order)
        rows.append(encode_weighted_example(tok, messages, answer, LossWeights(0.1, 1.0)))

    full = _step_gradients(tiny, rows, tmp_path, batch_size=8, accumulation=1)
    accumulated = _step_gradients(tiny, rows, tmp_path, batch_size=2, accumulation=4)

    reference = copy.deepcopy(model).train()
    batch = WeightedCompletionCollator(tok.pad_token_id)(rows)
    logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    weighted_token_loss(logits, batch["labels"], batch["loss_weights"]).backward()
    expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}

    assert full.keys() == accumulated.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(full[name], grad, msg=lambda m, n=name: f"batch 8, {n}: {m}")
        torch.testing.assert_close(accumulated[name], grad, msg=lambda m, n=name: f"4 x batch 2, {n}: {m}")
