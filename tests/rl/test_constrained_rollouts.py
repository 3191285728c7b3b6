"""Rollouts under the answer constraint: whatever the policy, each sampled answer is a valid permutation."""

from __future__ import annotations

import torch

from gr2.answer_constraint import prompt_candidate_sids
from gr2.base_model import load_base_model
from gr2.rerank_format import parse_answer
from rl.constrained_rollouts import constrain_rollouts


def test_candidates_are_read_back_from_the_rendered_prompt(tiny_sid_model, ml100k_catalog, ml100k_examples):
    _, tok = load_base_model(tiny_sid_model)
    ex = ml100k_examples[2]
    text = tok.apply_chat_template(ml100k_catalog.messages(ex, emphasized_history=[0]), tokenize=False,
                                   add_generation_prompt=True)
    assert prompt_candidate_sids(text) == ml100k_catalog.candidate_sids(ex)


def sample_rollouts(model_dir, catalog, examples, unique: bool, skip_special_tokens: bool) -> list[str]:
    """Rollouts as TRL's transformers path samples them, from a model whose ``generate`` is constrained."""
    model, tok = load_base_model(model_dir)
    constrain_rollouts(model, tok, max_reasoning_tokens=6, unique=unique)
    texts = [tok.apply_chat_template(catalog.messages(e), tokenize=False, add_generation_prompt=True)
             for e in examples]
    batch = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    torch.manual_seed(0)
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=True,
                         temperature=1.0, max_new_tokens=120, pad_token_id=tok.pad_token_id)
    return tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=skip_special_tokens)


def test_sampled_rollouts_are_valid_permutations(tiny_sid_model, ml100k_catalog, ml100k_examples):
    examples = ml100k_examples[:4]
    answers = sample_rollouts(tiny_sid_model, ml100k_catalog, examples, unique=True, skip_special_tokens=True)
    for answer, ex in zip(answers, examples, strict=True):
        parsed = parse_answer(answer, ml100k_catalog.candidate_sids(ex))
        assert parsed.valid and not parsed.repaired


def test_candidates_mode_allows_repeats_but_only_candidate_sids(tiny_sid_model, ml100k_catalog, ml100k_examples):
    """``unique=False``: K slots, each a candidate SID; an untrained policy repeats some, so validity is earned."""
    from tokenizer.sid import SID_RE

    examples = ml100k_examples[:4]
    answers = sample_rollouts(tiny_sid_model, ml100k_catalog, examples, unique=False, skip_special_tokens=False)
    repeated = 0
    for answer, ex in zip(answers, examples, strict=True):
        sids = ml100k_catalog.candidate_sids(ex)
        named = [m.group(0) for m in SID_RE.finditer(answer.split("</think>")[-1])]
        assert len(named) == len(sids) and set(named) <= set(sids)
        repeated += len(set(named)) < len(named)
        assert parse_answer(answer, sids).repaired == (len(set(named)) < len(named))
    assert repeated > 0


def test_one_pass_replay_agrees_with_allowed_at_every_prefix(tiny_sid_model, ml100k_catalog, ml100k_examples):
    """``allowed_along`` (what constrained scoring replays) equals ``allowed`` on each prefix, on token walks
    that mostly follow the constraint and sometimes stray from it."""
    import random

    from gr2.answer_constraint import RerankAnswerConstraint

    _, tok = load_base_model(tiny_sid_model)
    rng = random.Random(0)
    sids = [ml100k_catalog.candidate_sids(e)[:rng.randint(0, 4)] for e in ml100k_examples[:6]]
    for unique in (True, False):
        constraint = RerankAnswerConstraint(tok, sids, 0, max_reasoning_tokens=3, unique=unique)
        for row in range(len(sids)):
            walk: list[int] = []
            for _ in range(60):
                allowed = constraint.allowed(row, walk)
                stray = not allowed or rng.random() < 0.05
                walk.append(rng.randrange(len(tok)) if stray else rng.choice(allowed))
            assert constraint.allowed_along(row, walk) == [constraint.allowed(row, walk[:i]) for i in range(61)]


def test_index_prompts_are_read_back_as_list_numbers(tiny_sid_model, ml100k_catalog, ml100k_examples):
    import dataclasses

    from gr2.answer_constraint import prompt_answer_keys

    _, tok = load_base_model(tiny_sid_model)
    ex = ml100k_examples[2]
    for fmt, expected in (("sid", ml100k_catalog.candidate_sids(ex)), ("index", [str(i + 1) for i in range(10)])):
        catalog = dataclasses.replace(ml100k_catalog, answer_format=fmt)
        text = tok.apply_chat_template(catalog.messages(ex), tokenize=False, add_generation_prompt=True)
        assert prompt_answer_keys(text) == expected
