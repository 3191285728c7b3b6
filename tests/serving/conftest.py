"""A real vLLM engine on a tiny GR2-format model, shared by the serving tests of one module."""

from __future__ import annotations

import asyncio

import pytest

from gr2.base_model import TinyModelConfig, build_tiny_model
from gr2.recipes.common import save_model
from tokenizer.vocab import extend_vocabulary

SMALL = TinyModelConfig(vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, intermediate_size=128)


@pytest.fixture(scope="session")
def tiny_sid_model(ml100k, ml100k_catalog, tmp_path_factory):
    model, tok = build_tiny_model(ml100k.item_texts(), SMALL)
    extend_vocabulary(tok, model, ml100k_catalog.sids, item_texts=ml100k.item_texts())
    return save_model(model, tok, tmp_path_factory.mktemp("serving") / "model")


@pytest.fixture(scope="module")
def event_loop_for_engine():
    loop = asyncio.new_event_loop()
    yield loop
    pending = asyncio.all_tasks(loop)  # e.g. the engine's output handler
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


@pytest.fixture(scope="module")
def rerank_engine(tiny_sid_model, event_loop_for_engine):
    """vLLM's AsyncLLM binds its output loop to the event loop that first uses it: one loop per module."""
    from serving.engine import EngineSettings, RerankEngine

    engine = RerankEngine(EngineSettings(str(tiny_sid_model), max_model_len=2048, max_new_tokens=200,
                                         max_reasoning_chars=120, timeout_s=60)).start()
    yield engine
    engine.shutdown()
