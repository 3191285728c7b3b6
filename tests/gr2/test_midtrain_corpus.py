"""The stage-1 corpus: task mixture, no evaluation targets, consistent SID <-> text pairs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gr2.midtrain_corpus import MixtureConfig, build_midtrain_dataset, build_midtrain_examples


@pytest.fixture(scope="module")
def sids(ml100k):
    # any distinct SID strings will do for the corpus; the tokenizer issue supplies real ones
    return [f"<|sid_begin|><s_a_{i // 64}><s_b_{i % 64}><|sid_end|>" for i in range(ml100k.num_items)]


def test_mixture_shares(ml100k, sids):
    config = MixtureConfig(num_examples=4000, next_sid=0.5, sid_to_text=0.1, text_to_sid=0.1, item_text=0.3)
    examples = build_midtrain_examples(ml100k, sids, config)
    tasks = [e["task"] for e in examples]
    assert len(examples) == 4000
    for task, share in [("next_sid", 0.5), ("sid_to_text", 0.1), ("text_to_sid", 0.1), ("item_text", 0.3)]:
        assert abs(tasks.count(task) / 4000 - share) < 0.03
    assert tasks[:50] != sorted(tasks[:50])  # shuffled, not grouped by task


def test_next_sid_never_uses_evaluation_targets(ml100k, sids):
    examples = build_midtrain_examples(ml100k, sids, MixtureConfig(num_examples=3000, next_sid=1, sid_to_text=0,
                                                                   text_to_sid=0, item_text=0))
    index = {s: i for i, s in enumerate(sids)}
    train_pairs = set()
    for seq in ml100k.train_sequences():
        train_pairs.update(zip(seq[:-1].tolist(), seq[1:].tolist(), strict=True))
    for e in examples:
        history = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", e["prompt"][0]["content"])
        target = index[e["completion"][0]["content"]]
        assert (index[history[-1]], target) in train_pairs  # the pair occurs in some training sequence
        assert 1 <= len(history) <= 20


def test_sid_text_pairs_agree(ml100k, sids):
    examples = build_midtrain_examples(ml100k, sids, MixtureConfig(num_examples=200, next_sid=0, item_text=0))
    titles = ml100k.items["title"].tolist()
    for e in examples:
        if e["task"] == "text_to_sid":
            i = sids.index(e["completion"][0]["content"])
            assert titles[i] in e["prompt"][0]["content"]
        else:
            i = sids.index(re.search(r"<\|sid_begin\|>.*?<\|sid_end\|>", e["prompt"][0]["content"]).group())
            assert e["completion"][0]["content"].startswith(titles[i])


def test_dataset_and_determinism(ml100k, sids):
    config = MixtureConfig(num_examples=300)
    a, b = build_midtrain_dataset(ml100k, sids, config), build_midtrain_dataset(ml100k, sids, config)
    assert a.column_names == ["prompt", "completion", "task"] and a[:] == b[:]
    with pytest.raises(ValueError, match="SIDs for"):
        build_midtrain_examples(ml100k, sids[:-1], config)
    with pytest.raises(ValueError, match="mixture weights"):
        MixtureConfig(next_sid=-1).weights()
    assert np.isclose(MixtureConfig().weights().sum(), 1)


def test_pick_next_answers_the_rerank_prompt_with_the_true_next_item_first(ml100k, sids):
    from gr2.rerank_format import parse_answer

    config = MixtureConfig(num_examples=300, next_sid=0, sid_to_text=0, text_to_sid=0, item_text=0, pick_next=1,
                           pick_history=5, pick_candidates=10)
    index = {s: i for i, s in enumerate(sids)}
    train_pairs = set()
    for seq in ml100k.train_sequences():
        train_pairs.update(zip(seq[:-1].tolist(), seq[1:].tolist(), strict=True))
    first_positions = set()
    for e in build_midtrain_examples(ml100k, sids, config):
        system, user = e["prompt"]
        assert system["role"] == "system" and user["role"] == "user"
        history_part, candidate_part = user["content"].split("Candidates")
        history = [index[s] for s in re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", history_part)]
        candidates = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", candidate_part)
        assert 1 <= len(history) <= 5 and len(set(candidates)) == len(candidates) == 10
        parsed = parse_answer(e["completion"][0]["content"], candidates)
        assert parsed.valid and not parsed.repaired  # a full permutation of the listed candidates
        target = index[candidates[parsed.order[0]]]
        assert (history[-1], target) in train_pairs  # the true next item of a training sequence
        assert parsed.order[1:] == sorted(parsed.order[1:])  # the rest keep their listed order
        first_positions.add(parsed.order[0])
    assert len(first_positions) > 5  # the true item sits anywhere in the list, not always first


def test_copy_sids_repeats_a_window_of_a_training_sequence(ml100k, sids):
    config = MixtureConfig(num_examples=300, next_sid=0, sid_to_text=0, text_to_sid=0, item_text=0, copy_sids=1,
                           pick_candidates=6)
    index = {s: i for i, s in enumerate(sids)}
    train_pairs = set()
    for seq in ml100k.train_sequences():
        train_pairs.update(zip(seq[:-1].tolist(), seq[1:].tolist(), strict=True))
    sizes = set()
    for e in build_midtrain_examples(ml100k, sids, config):
        listed = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", e["prompt"][0]["content"])
        assert e["completion"][0]["content"] == "".join(listed)  # the answer is the list, verbatim
        items = [index[s] for s in listed]
        assert all(pair in train_pairs for pair in zip(items[:-1], items[1:], strict=True))  # consecutive
        sizes.add(len(items))
    assert sizes == set(range(2, 7))


def test_sid_sequence_covers_every_training_sequence_and_holds_out_train_targets(ml100k, sids):
    """One pass = every training sequence once, whole (up to ``sequence_length``), minus ``holdout_last`` items:
    the train-split rerank targets (seq[-3] with one cut) never reach stage 1."""
    config = MixtureConfig(num_examples=0, sequences=2, sequence_length=30, holdout_last=1)
    examples = build_midtrain_examples(ml100k, sids, config)
    assert {e["task"] for e in examples} == {"sid_sequence"}
    train = [s[:-1] for s in ml100k.train_sequences() if len(s) - 1 > config.min_history]
    assert len(examples) == 2 * len(train)
    index = {s: i for i, s in enumerate(sids)}
    written = {tuple(index[x] for x in re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", e["completion"][0]["content"]))
               for e in examples}
    # each written sequence stops right before its user's train-split target seq[-3]
    assert written == {tuple(s[-30:].tolist()) for s in train}
    assert written == {tuple(s[:-3][-30:].tolist()) for s in ml100k.sequences if len(s) - 3 > config.min_history}


def test_phases_do_not_repeat_the_mixture_sequences():
    from gr2.recipes.midtrain import MidtrainPhase

    main = MixtureConfig(sequences=3)
    assert MidtrainPhase(name="copy").mixture(main).sequences == 0
