"""Stage 0 on ML-100K titles: the loss falls, a killed run resumes from its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from gr2.base_model import build_tiny_model
from gr2.recipes.common import TrainingSettings, latest_checkpoint
from gr2.recipes.pretrain import PretrainConfig, pretrain_on_text
from tests.conftest import small_model_config

SMALL = small_model_config()


def title_loss(model, tok, titles):
    batch = tok(titles, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        return model(**batch, labels=labels).loss.item()


@pytest.mark.slow
def test_pretraining_lowers_loss_and_resumes(ml100k, tmp_path):
    texts = ml100k.item_texts()
    model, tok = build_tiny_model(texts, SMALL)
    held_out = texts[:64]
    before = title_loss(model, tok, held_out)
    settings = dict(learning_rate=2e-3, save_steps=20, batch_size=16, max_length=64, logging_steps=10)
    # first run stops at step 20 (as if killed after its checkpoint) ...
    pretrain_on_text(model, tok, texts, tmp_path, PretrainConfig(TrainingSettings(max_steps=20, **settings)))
    assert latest_checkpoint(tmp_path).endswith("checkpoint-20")
    # ... and a new process with a fresh model picks up from there
    model2, _ = build_tiny_model(texts, SMALL)  # same seed: same initial weights as the first run
    metrics = pretrain_on_text(model2, tok, texts, tmp_path, PretrainConfig(TrainingSettings(max_steps=40, **settings)))
    assert metrics["steps"] == 40
    state = json.loads((tmp_path / "checkpoint-40" / "trainer_state.json").read_text())
    assert state["log_history"][0]["step"] == 10  # history carried over from the first run
    assert title_loss(model2, tok, held_out) < before - 1.0
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "tokenizer.json").is_file()
