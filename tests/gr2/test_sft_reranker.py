"""Traces -> stage-2 SFT -> Reranker -> metrics, on ML-100K with a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gr2.evaluate import rerank_metrics
from gr2.recipes.common import TrainingSettings, latest_checkpoint
from gr2.recipes.sft import SFTStageConfig, encode_traces, sft
from gr2.reranker import GenerationSettings, Reranker
from gr2.teachers import HeuristicTeacher
from gr2.traces import TraceConfig, generate_traces


@pytest.fixture(scope="module")
def traces(ml100k_catalog, ml100k_cooc, ml100k_examples):
    teacher = HeuristicTeacher(ml100k_catalog, ml100k_cooc)
    records, _ = generate_traces(ml100k_examples, ml100k_catalog, teacher, TraceConfig(mode="targeted"))
    return records


def test_emphasis_share(traces, ml100k_catalog, tiny_sid_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sid_model)
    cited = sum(1 for t in traces if t["evidence"])
    rows = encode_traces(traces, ml100k_catalog, tok, SFTStageConfig(emphasis_share=1.0))
    assert sum(r["emphasised"] for r in rows) == cited > 0
    some = next(r for r in rows if r["emphasised"])
    assert "<start_important>" in tok.decode(some["input_ids"])
    none = encode_traces(traces, ml100k_catalog, tok, SFTStageConfig(emphasis_share=0))
    assert not any(r["emphasised"] for r in none)


def test_too_long_trace_names_itself_and_the_setting(traces, ml100k_catalog, tiny_sid_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sid_model)
    config = SFTStageConfig(training=TrainingSettings(max_length=64))
    with pytest.raises(ValueError, match=rf"trace 1 \(user {traces[0]['user']}\): .*sft.training.max_length"):
        encode_traces(traces, ml100k_catalog, tok, config)


@pytest.mark.slow
def test_sft_then_rerank(traces, ml100k_catalog, ml100k_examples, tiny_sid_model, tmp_path):
    config = SFTStageConfig(training=TrainingSettings(max_steps=30, batch_size=8, learning_rate=3e-3,
                                                      save_steps=15, logging_steps=5, max_length=1024))
    metrics = sft(tiny_sid_model, traces, ml100k_catalog, tmp_path, config)
    assert metrics["steps"] == 30 and metrics["traces"] == len(traces)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-30")
    log = json.loads((tmp_path / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses[-1] < losses[0]

    examples = ml100k_examples[:8]
    reranker = Reranker.from_dir(tmp_path / "model", ml100k_catalog, GenerationSettings(max_new_tokens=64))
    answers = reranker.rerank(examples)
    for ex, a in zip(examples, answers, strict=True):
        assert sorted(a.order) == list(range(len(ex.candidates)))
        assert a.valid and not a.repaired and not a.fallback  # constrained decoding (the default), as served
    m = rerank_metrics(examples, answers)
    with_target = [(ex, a) for ex, a in zip(examples, answers, strict=True) if ex.target_index is not None]
    assert m["users"] == 8 and m["with_target"] == len(with_target) > 0
    assert m["R@5"] == pytest.approx(np.mean([a.order.index(ex.target_index) < 5 for ex, a in with_target]))
    assert m["R@1"] == pytest.approx(np.mean([a.order[0] == ex.target_index for ex, a in with_target]))
