"""The transformers peer engine: concurrent requests batched into one generate, exact permutations,
and one bad request failing alone."""

from __future__ import annotations

import asyncio

import pytest

from gr2.engines.hf_engine import TransformersRerankEngine, _Job
from gr2.engines.vllm_engine import EngineSettings, PromptTooLong
from gr2.rerank_format import PromptItem, parse_answer

SIZES = [8, 9, 10, 8, 9, 30]  # different K in one batch; 30 SIDs need more than max_new_tokens=160


def items(catalog, indices, title=None):
    return [PromptItem(catalog.sids.sid(i), title or catalog.titles[i]) for i in indices]


@pytest.fixture(scope="module")
def hf_engine(tiny_sid_model):
    engine = TransformersRerankEngine(EngineSettings(str(tiny_sid_model), max_model_len=2048, max_new_tokens=160,
                                                     max_reasoning_tokens=30, timeout_s=120))
    engine.start()
    yield engine
    engine.shutdown()


def test_concurrent_requests_are_batched_into_exact_permutations(hf_engine, ml100k_catalog):
    async def many():
        return await asyncio.gather(*(hf_engine.rerank(items(ml100k_catalog, [i, i + 1]),
                                                       items(ml100k_catalog, range(40 * i, 40 * i + k)))
                                      for i, k in enumerate(SIZES)))

    outs = asyncio.run(many())
    for k, out in zip(SIZES, outs, strict=True):
        assert sorted(out.answer.order) == list(range(k)) and not out.fallback
        # an untrained model decoding freely repeats and invents SIDs; the constraint leaves nothing to repair
        assert out.answer.valid and not out.answer.repaired, out.answer.problems
        assert out.prompt_tokens > 50
    assert max(hf_engine.batch_sizes) > 1  # requests waiting together went through one generate


def test_one_bad_request_fails_alone(hf_engine, ml100k_catalog, monkeypatch):
    """An overlong prompt is refused before it is queued (the others answer); a request that makes
    ``generate`` fail falls back alone while its batch-mates get their answers."""
    long_history = items(ml100k_catalog, range(300), "word " * 40)

    async def with_overlong():
        return await asyncio.gather(
            *(hf_engine.rerank(items(ml100k_catalog, [i]), items(ml100k_catalog, range(10 * i, 10 * i + 10)))
              for i in range(3)),
            hf_engine.rerank(long_history, items(ml100k_catalog, range(10))), return_exceptions=True)

    *ok, refused = asyncio.run(with_overlong())
    assert isinstance(refused, PromptTooLong) and refused.max_model_len == 2048
    assert all(o.answer.valid and not o.fallback for o in ok)

    generate = hf_engine._generate

    def poisoned(prepared):
        if any(p.prompt_ids == poison.prompt_ids for p in prepared):
            raise RuntimeError("this request breaks generate")
        return generate(prepared)

    poison = hf_engine.prepare(items(ml100k_catalog, [7]), items(ml100k_catalog, range(500, 510), "poison pill"))
    monkeypatch.setattr(hf_engine, "_generate", poisoned)
    batches_before = len(hf_engine.batch_sizes)

    others = [hf_engine.prepare(items(ml100k_catalog, [i]), items(ml100k_catalog, range(20 * i, 20 * i + 10)))
              for i in range(4)]
    batch = [*others[:2], poison, *others[2:]]

    async def mixed():  # one batch of five, as the worker would take them from its queue
        loop = asyncio.get_running_loop()
        jobs = [_Job(p, loop.create_future(), loop) for p in batch]
        await asyncio.to_thread(hf_engine._run, jobs)
        return await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)

    outs = asyncio.run(mixed())
    assert isinstance(outs[2], RuntimeError)  # generate() turns this into a fallback for that request alone
    for prepared, out in zip(batch, outs, strict=True):
        if prepared is not poison:
            assert parse_answer(out[0], prepared.answer_keys).valid
    assert hf_engine.batch_sizes[batches_before:] == [1, 1, 1, 1]  # the batch failed, then each went alone
    fallback = asyncio.run(hf_engine.generate(poison))  # and through the engine's API: a fallback, not an error
    assert fallback.fallback and fallback.fallback_reason == "engine error"
