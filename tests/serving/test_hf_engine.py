"""The transformers peer engine: concurrent requests batched into one generate, exact permutations."""

from __future__ import annotations

import asyncio

from gr2.engines.hf_engine import TransformersRerankEngine
from gr2.engines.vllm_engine import EngineSettings
from gr2.rerank_format import PromptItem

SIZES = [8, 9, 10, 8, 9, 30]  # different K in one batch; 30 SIDs need more than max_new_tokens=160


def items(catalog, indices):
    return [PromptItem(catalog.sids.sid(i), catalog.titles[i]) for i in indices]


def test_concurrent_requests_are_batched_into_exact_permutations(tiny_sid_model, ml100k_catalog):
    engine = TransformersRerankEngine(EngineSettings(str(tiny_sid_model), max_model_len=2048, max_new_tokens=160,
                                                     max_reasoning_tokens=30, timeout_s=120))
    engine.start()
    try:
        async def many():
            return await asyncio.gather(*(engine.rerank(items(ml100k_catalog, [i, i + 1]),
                                                        items(ml100k_catalog, range(40 * i, 40 * i + k)))
                                          for i, k in enumerate(SIZES)))

        outs = asyncio.run(many())
    finally:
        engine.shutdown()
    for k, out in zip(SIZES, outs, strict=True):
        assert sorted(out.answer.order) == list(range(k)) and not out.fallback
        # an untrained model decoding freely repeats and invents SIDs; the constraint leaves nothing to repair
        assert out.answer.valid and not out.answer.repaired, out.answer.problems
        assert out.prompt_tokens > 50
    assert max(engine.batch_sizes) > 1  # requests waiting together went through one generate
