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
