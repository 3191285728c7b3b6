"""Constrained decoding: an untrained model, decoding greedily, still writes only valid permutations."""

from __future__ import annotations

from gr2.answer_constraint import HEAD, SEPARATOR, TAIL, RerankAnswerConstraint
from gr2.base_model import load_base_model
from gr2.rerank_format import THINK_CLOSE, THINK_OPEN, format_answer, parse_answer
from gr2.reranker import GenerationSettings, Reranker


def test_state_machine_follows_a_written_answer(tiny_sid_model, ml100k_catalog, ml100k_examples):
    _, tok = load_base_model(tiny_sid_model)
    ex = ml100k_examples[1]
    sids = ml100k_catalog.candidate_sids(ex)
    constraint = RerankAnswerConstraint(tok, [sids], prompt_length=0, max_reasoning_tokens=6)
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    assert constraint.allowed(0, []) == encode(THINK_OPEN)
    assert constraint.allowed(0, encode(THINK_OPEN + "user")) is None  # free reasoning
    assert constraint.allowed(0, encode(THINK_OPEN + "a b c d e f g h i")) == encode(THINK_CLOSE)  # cut at 6
    answer = encode(format_answer("ok", [sids[3], *sids[:3], *sids[4:]]))
    close = answer.index(encode(THINK_CLOSE)[0]) + 1
    first_sid = close + len(encode(HEAD))
    assert constraint.allowed(0, answer[:first_sid]) == sorted({encode(s)[0] for s in sids})
    second_sid = first_sid + len(encode(sids[3])) + len(encode(SEPARATOR))
    assert answer[second_sid - len(encode(SEPARATOR)):second_sid] == encode(SEPARATOR)
    # after the first pick, that candidate cannot be written again: somewhere along its tokens the path closes
    prefix, blocked = answer[:second_sid], False
    for token in encode(sids[3]):
        if token not in constraint.allowed(0, prefix):
            blocked = True
            break
        prefix = prefix + [token]
    assert blocked
    end = len(answer) - len(encode(TAIL))
    assert constraint.allowed(0, answer[:end]) == encode(TAIL)[:1]
    assert constraint.allowed(0, answer) == [tok.eos_token_id]


def test_untrained_model_answers_are_valid_permutations(tiny_sid_model, ml100k_catalog, ml100k_examples):
    examples = ml100k_examples[:12]
    free = Reranker.from_dir(tiny_sid_model, ml100k_catalog,
                             GenerationSettings(max_new_tokens=120, batch_size=6, constrained=False))
    assert not any(a.valid for a in free.rerank(examples))  # on its own the untrained model writes junk
    constrained = Reranker.from_dir(tiny_sid_model, ml100k_catalog,
                                    GenerationSettings(max_new_tokens=120, batch_size=6, max_reasoning_tokens=8))
    texts = constrained.generate([ml100k_catalog.messages(e) for e in examples],
                                 candidate_sids=[ml100k_catalog.candidate_sids(e) for e in examples])
    for text, ex in zip(texts, examples, strict=True):
        parsed = parse_answer(text, ml100k_catalog.candidate_sids(ex))
        assert parsed.valid and not parsed.repaired and sorted(parsed.order) == list(range(len(ex.candidates)))


def test_constrained_answers_are_not_cut_by_a_short_token_limit(tiny_sid_model, ml100k_catalog, ml100k_examples):
    """max_new_tokens below the answer's token budget (long SIDs, long reasoning) must not truncate it."""
    examples = ml100k_examples[:4]
    short = Reranker.from_dir(tiny_sid_model, ml100k_catalog,
                              GenerationSettings(max_new_tokens=10, batch_size=4, max_reasoning_tokens=8))
    for answer in short.rerank(examples):
        assert answer.valid and not answer.repaired


def test_index_answers_name_candidates_by_number(tiny_sid_model, ml100k_catalog, ml100k_examples):
    """answer_format index: the prompt asks for list numbers, the constrained answer is a permutation of "1".."K"
    whose tokens are those of the same answer written out (as SFT trains on it), and digits stay allowed in the
    reasoning (titles carry them)."""
    import dataclasses

    _, tok = load_base_model(tiny_sid_model)
    catalog = dataclasses.replace(ml100k_catalog, answer_format="index")
    ex = ml100k_examples[0]
    keys = catalog.answer_keys(ex)
    assert keys == [str(i + 1) for i in range(len(ex.candidates))]
    assert '["n", ...]' in catalog.messages(ex)[0]["content"]
    constraint = RerankAnswerConstraint(tok, [keys], prompt_length=0, max_reasoning_tokens=6)
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    assert not set(encode("Toy Story 1995 2 10")) & set(constraint.banned_in_reasoning)
    written = encode(format_answer("ok", [keys[2], keys[9], *keys[:2], *keys[3:9]]))
    sets = constraint.allowed_along(0, written)
    assert all(allowed is None or token in allowed for token, allowed in zip(written, sets, strict=False))
    assert sets[len(written)] == [tok.eos_token_id]  # the written answer is complete under the constraint
    reranker = Reranker.from_dir(tiny_sid_model, catalog, GenerationSettings(max_new_tokens=60, batch_size=4,
                                                                             max_reasoning_tokens=4))
    for answer in reranker.rerank(ml100k_examples[:4]):
        assert answer.valid and sorted(answer.order) == list(range(len(ex.candidates)))
