"""Stage 1 on ML-100K with the tiny model: SID tokens added, loss falls, LoRA variant merges."""

from __future__ import annotations

import json
import shutil

import pytest

from data.errors import DataError
from gr2.base_model import build_tiny_model
from gr2.midtrain_corpus import MixtureConfig
from gr2.recipes.common import LoraSettings, TrainingSettings, save_model
from gr2.recipes.midtrain import MidtrainConfig, MidtrainPhase, midtrain
from tests.conftest import small_model_config

SMALL = small_model_config()


@pytest.fixture(scope="module")
def base_dir(ml100k, tmp_path_factory):
    model, tok = build_tiny_model(ml100k.item_texts(), SMALL)
    return save_model(model, tok, tmp_path_factory.mktemp("base") / "model")


@pytest.mark.slow
@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, alpha=8)], ids=["full", "lora"])
def test_midtrain(ml100k, ml100k_catalog, base_dir, tmp_path, lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mixture = MixtureConfig(num_examples=400, pick_next=0.1, pick_history=2, pick_candidates=4)
    config = MidtrainConfig(mixture=mixture,
                            training=TrainingSettings(max_steps=25, batch_size=16, learning_rate=3e-3,
                                                      logging_steps=5, save_steps=25, max_length=384,
                                                      sampling="group_by_length"),
                            lora=lora)
    metrics = midtrain(base_dir, ml100k, ml100k_catalog.sids, tmp_path, config)
    assert metrics["steps"] == 25 and metrics["vocab"]["added"] == 2 + 64 + 64
    assert set(metrics["tasks"]) == {"next_sid", "sid_to_text", "text_to_sid", "item_text", "pick_next"}
    losses = [e["loss"] for e in json.loads((tmp_path / "checkpoint-25" / "trainer_state.json").read_text())
              ["log_history"] if "loss" in e]
    assert losses[-1] < losses[0]
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    sid = ml100k_catalog.sids.sid(7)
    assert len(tok(sid, add_special_tokens=False)["input_ids"]) == 4  # begin, a, b, end
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged


def test_midtrain_phases_continue_from_the_mixture_and_resume(ml100k, ml100k_catalog, base_dir, tmp_path):
    """A copy warm-up phase trains after the mixture on copy_sids only; a rerun reloads finished phases."""
    mixture = MixtureConfig(num_examples=64, pick_history=2, pick_candidates=4)
    tiny = dict(max_steps=3, batch_size=8, learning_rate=3e-3, logging_steps=1, save_steps=3, max_length=256)
    config = MidtrainConfig(mixture=mixture, training=TrainingSettings(**tiny),
                            phases=[MidtrainPhase(name="copy", num_examples=48,
                                                  training=TrainingSettings(**tiny, lr_scheduler="constant"))])
    metrics = midtrain(base_dir, ml100k, ml100k_catalog.sids, tmp_path, config)
    assert [p["phase"] for p in metrics["phases"]] == ["mixture", "copy"]
    assert metrics["phases"][1]["tasks"] == {"copy_sids": 48} and metrics["steps"] == 6
    assert (tmp_path / "phase-0-mixture" / "model").is_dir() and (tmp_path / "model").is_dir()
    copy_state = json.loads((tmp_path / "phase-1-copy" / "checkpoint-3" / "trainer_state.json").read_text())
    assert {e["learning_rate"] for e in copy_state["log_history"] if "learning_rate" in e} == {3e-3}

    # killed after the mixture phase: the rerun starts the copy phase from phase-0's model
    for path in ("model", "metrics.json", "phase-1-copy"):
        shutil.rmtree(tmp_path / path) if (tmp_path / path).is_dir() else (tmp_path / path).unlink()
    again = midtrain(base_dir, ml100k, ml100k_catalog.sids, tmp_path, config)
    assert again["phases"][0] == metrics["phases"][0] and again["phases"][1]["steps"] == 3


def test_midtrain_phase_rejects_unknown_tasks():
    with pytest.raises(DataError, match="unknown task"):
        MidtrainPhase(name="copy", tasks={"copy": 1.0})
