"""The actor: units per granularity, a head that starts near the keep target, saves that load back,
LoRA that trains only adapters and heads, deterministic spans within the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hilight.actor import EmphasisActor
from hilight.config import ActorConfig, ActorLora
from hilight.spans import Budget, HistoryLayout


@pytest.fixture(scope="module")
def actor(tiny_sid_model):
    torch.manual_seed(0)
    return EmphasisActor.from_backbone(tiny_sid_model, ActorConfig())


def test_units_and_initial_keep_probability(actor, ml100k_catalog, ml100k_examples):
    inputs = [actor.prepare_example(ml100k_catalog, ex) for ex in ml100k_examples[:4]]
    assert all(len(x.units) == len(ex.history) == 10 for x, ex in zip(inputs, ml100k_examples, strict=False))
    for x in inputs:  # each item's positions are exactly its line's tokens, after the candidates
        assert [len(p) for p in x.units] == x.layout.item_tokens
        first_history = x.units[0][0]
        assert x.input_ids[first_history:first_history + len(x.units[0])] == \
            actor.tokenizer(x.layout.lines[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = actor(inputs)
    probs = torch.sigmoid(torch.cat(out.logits))
    assert [len(lg) for lg in out.logits] == [10] * 4 and out.values.shape == (4,)
    assert abs(float(probs.mean()) - 0.2) < 0.05 and float(probs.std()) > 0  # near the target, not all equal


def test_padding_does_not_change_an_example(actor, ml100k_catalog, ml100k_examples):
    short, long_ = (actor.prepare_example(ml100k_catalog, ex) for ex in ml100k_examples[:2])
    alone = actor([short]).logits[0]
    batched = actor([short, long_]).logits[0]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_token_granularity_and_deterministic_spans(tiny_sid_model, ml100k_catalog, ml100k_examples):
    actor = EmphasisActor.from_backbone(tiny_sid_model, ActorConfig(granularity="tokens", window=6))
    inputs = [actor.prepare_example(ml100k_catalog, ex) for ex in ml100k_examples[:6]]
    assert all(len(x.units) == x.layout.total_tokens for x in inputs)
    budget = Budget(share=0.25, max_spans=5)
    first, again = actor.apply(inputs, budget), actor.apply(inputs, budget)
    assert first == again
    for x, spans in zip(inputs, first, strict=True):
        assert 1 <= len(spans) <= 5 and sum(s.tokens for s in spans) <= 0.25 * x.layout.total_tokens
    # nothing is over 0.5 in an untrained actor: the threshold decode emphasises nothing
    assert all(s == [] for s in actor.apply(inputs, budget, decode="threshold"))


def test_save_and_load_give_the_same_actor(actor, ml100k_catalog, ml100k_examples, tmp_path):
    with torch.no_grad():
        actor.head[-1].bias.add_(0.3)  # something training would have changed
    actor.save(tmp_path / "actor")
    loaded = EmphasisActor.load(tmp_path / "actor")
    inputs = [actor.prepare_example(ml100k_catalog, ex) for ex in ml100k_examples[:3]]
    with torch.no_grad():
        for a, b in zip(actor.eval()(inputs).logits, loaded(inputs).logits, strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_lora_trains_adapters_and_heads_only(tiny_sid_model, tmp_path, ml100k_catalog, ml100k_examples):
    actor = EmphasisActor.from_backbone(tiny_sid_model, ActorConfig(lora=ActorLora(r=4)))
    trainable = set(actor.trainable_state())
    assert trainable and all("lora_" in k or k.startswith(("head.", "value_head.")) for k in trainable)
    assert any("q_proj" in k for k in trainable) and any("v_proj" in k for k in trainable)
    assert not any("k_proj" in k or "mlp" in k for k in trainable)
    actor.save(tmp_path / "lora")
    loaded = EmphasisActor.load(tmp_path / "lora")
    x = [actor.prepare_example(ml100k_catalog, ml100k_examples[0])]
    with torch.no_grad():
        assert torch.allclose(actor.eval()(x).logits[0], loaded(x).logits[0], atol=1e-6)


def test_layout_matches_the_actor_tokens(actor, ml100k_catalog, ml100k_examples):
    ex = ml100k_examples[3]
    layout = HistoryLayout.for_example(actor.tokenizer, ml100k_catalog, ex)
    assert layout.item_tokens == actor.prepare_example(ml100k_catalog, ex).layout.item_tokens
    assert layout.budget_tokens(Budget(share=0.25)) == int(np.floor(0.25 * layout.total_tokens))
