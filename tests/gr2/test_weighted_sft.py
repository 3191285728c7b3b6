"""Stage-2 token weights: where they fall, what the loss is, and that TRL trains with them."""

from __future__ import annotations

import pytest
import torch

from gr2.base_model import build_tiny_model
from gr2.rerank_format import PromptItem, build_messages, format_answer
from gr2.weighted_sft import (
    LossWeights,
    WeightedCompletionCollator,
    WeightedSFTTrainer,
    encode_weighted_example,
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


def test_weighted_loss_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, 3, 5, 1]])
    weights = torch.tensor([[0.0, 0.1, 1.0, 1.0]])
    logp = logits.log_softmax(-1)
    ce = [-logp[0, 0, 3], -logp[0, 1, 5], -logp[0, 2, 1]]
    expected = (0.1 * ce[0] + ce[1] + ce[2]) / 2.1
    torch.testing.assert_close(weighted_token_loss(logits, labels, weights), expected)


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
