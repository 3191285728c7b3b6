"""Evaluation through offline vLLM decodes what HF greedy decodes: same prompts, same permutation constraint.

One vLLM CPU engine (about a minute to start on 2 cores) on the tiny untrained SID model serves every test
here; the HF ``Reranker`` on the same model is the reference. The untrained model's logits are nearly flat,
so a handful of near-ties may break differently between the two float32 implementations: orders must
agree on at least 90% of the examples, and every constrained answer must be an exact permutation.
"""

from __future__ import annotations

import pytest

from gr2.reranker import GenerationSettings, Reranker, load_reranker

pytestmark = pytest.mark.slow
CONSTRAINED = GenerationSettings(max_new_tokens=120, batch_size=8, max_reasoning_tokens=8, backend="vllm")
FREE = GenerationSettings(max_new_tokens=48, batch_size=8, constrained=False, backend="vllm")


@pytest.fixture(scope="module")
def vllm_reranker(tiny_sid_model, ml100k_catalog):
    from gr2.engines.vllm_batch import VLLMReranker

    reranker = VLLMReranker.from_dir(tiny_sid_model, ml100k_catalog, CONSTRAINED)
    yield reranker
    reranker.close()


def agreement(a, b) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def test_constrained_answers_are_permutations_equal_to_hf(vllm_reranker, tiny_sid_model, ml100k_catalog,
                                                           ml100k_examples):
    examples = ml100k_examples[:24]
    answers = vllm_reranker.rerank(examples, progress=True)
    assert len(answers) == len(examples)
    for answer, ex in zip(answers, examples, strict=True):
        assert answer.valid and not answer.repaired and not answer.fallback, answer.problems
        assert sorted(answer.order) == list(range(len(ex.candidates)))
    hf = Reranker.from_dir(tiny_sid_model, ml100k_catalog, CONSTRAINED).rerank(examples)
    same = agreement([a.order for a in answers], [h.order for h in hf])
    print(f"constrained: {same:.0%} of {len(examples)} orders identical to HF greedy")
    assert same >= 0.9


def test_free_decoding_goes_through(vllm_reranker, tiny_sid_model, ml100k_catalog, ml100k_examples):
    examples = ml100k_examples[:12]
    free = vllm_reranker.with_settings(FREE)
    texts = free.generate([ml100k_catalog.messages(e) for e in examples],
                          candidate_sids=[ml100k_catalog.candidate_sids(e) for e in examples])
    answers = free.rerank(examples)
    assert len(answers) == len(examples) and all(t for t in texts)
    assert not any(a.valid for a in answers)  # unconstrained, the untrained model writes junk, as with HF
    hf = Reranker.from_dir(tiny_sid_model, ml100k_catalog, FREE).generate(
        [ml100k_catalog.messages(e) for e in examples])
    same = agreement(texts, hf)
    print(f"free decoding: {same:.0%} of {len(examples)} texts identical to HF greedy")
    assert same >= 0.9


def test_numbered_answers_without_reasoning_decode_as_with_hf(vllm_reranker, tiny_sid_model, ml100k_catalog,
                                                              ml100k_examples):
    """answer_format index, reasoning closed at once: vLLM's permutation processor walks the same keys as HF."""
    import dataclasses

    from gr2.engines.vllm_batch import VLLMReranker

    catalog = dataclasses.replace(ml100k_catalog, answer_format="index")
    settings = dataclasses.replace(CONSTRAINED, max_reasoning_tokens=0)
    examples = ml100k_examples[:16]
    numbered = VLLMReranker(vllm_reranker.llm, vllm_reranker.tokenizer, catalog, settings, vllm_reranker.model_dir)
    texts = numbered.generate([catalog.messages(e) for e in examples],
                              candidate_sids=[catalog.answer_keys(e) for e in examples])
    assert all(t.startswith('<think></think>\n{"recommendations": ["') for t in texts)
    answers = numbered.rerank(examples)
    assert all(a.valid and not a.repaired for a in answers)
    hf = Reranker.from_dir(tiny_sid_model, catalog, dataclasses.replace(settings, backend="hf")).rerank(examples)
    assert agreement([a.order for a in answers], [h.order for h in hf]) >= 0.9


def test_load_reranker_reuses_one_engine_per_model(vllm_reranker, tiny_sid_model, ml100k_catalog):
    """Variants of one model share its engine; switching away closes it (run last: it stops the engine)."""
    free = load_reranker(tiny_sid_model, ml100k_catalog, FREE, reuse=vllm_reranker)
    assert free.llm is vllm_reranker.llm and not free.settings.constrained
    hf = load_reranker(tiny_sid_model, ml100k_catalog, GenerationSettings(backend="hf"), reuse=free)
    assert isinstance(hf, Reranker) and free.llm is None
    with pytest.raises(ValueError, match="backend"):
        load_reranker(tiny_sid_model, ml100k_catalog, GenerationSettings(backend="tpu"))
