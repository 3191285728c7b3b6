"""Learning sanity: on a rule a tiny model can learn in seconds, SFT and RL must actually learn it.

Shape checks pass just as well for a loss that trains the wrong log-probs (labels not shifted,
weights on the prompt, the wrong sign); these tests do not. The world: 8 kinds of item (the first
SID level is the kind), and the user always wants the one candidate of kind 0, wherever the
pre-ranker put it. Held-out prompts are new draws of history, candidates and target position.
(A rule read from the history, such as "the candidate sharing a title word with the last history
item goes first", did not rise above chance within a minute of CPU for a 2-layer model: copying
through attention needs far more steps than these tests can afford.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gr2.rerank_data import ItemCatalog, RerankExample

KINDS, PER_KIND, K = 8, 12, 4
WORDS = ("amber birch cedar delta ember fable gable harbor island jasper kettle lumen meadow nectar orchid "
         "pebble quartz raven saffron thistle umber velvet willow xenon yarrow zephyr").split()


def make_catalog() -> ItemCatalog:
    from tokenizer.sid import SemanticIDs

    n = KINDS * PER_KIND
    rng = np.random.default_rng(0)
    titles = [f"{WORDS[int(rng.integers(len(WORDS)))].title()} {i}" for i in range(n)]
    codes = np.stack([np.arange(n) // PER_KIND, np.arange(n) % PER_KIND], axis=1)
    return ItemCatalog(SemanticIDs(codes, (KINDS, PER_KIND)), titles, [str(i) for i in range(n)])


def make_examples(count: int, seed: int) -> list[RerankExample]:
    """History of three other kinds; K candidates of distinct kinds, exactly one of kind 0 (the target)."""
    rng = np.random.default_rng(seed)
    of_kind = lambda kind: int(kind * PER_KIND + rng.integers(PER_KIND))  # noqa: E731
    examples = []
    for _ in range(count):
        others = rng.permutation(np.arange(1, KINDS))
        target = of_kind(0)
        candidates = [of_kind(k) for k in others[3:3 + K - 1]]
        candidates.insert(int(rng.integers(K)), target)
        examples.append(RerankExample(0, [of_kind(k) for k in others[:3]], candidates, target, "train"))
    return examples


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The catalogue and an untrained 2-layer model that knows its SID tokens (saved, as stages load them)."""
    from gr2.base_model import TinyModelConfig, build_tiny_model
    from gr2.recipes.common import save_model
    from tokenizer.vocab import extend_vocabulary

    catalog = make_catalog()
    config = TinyModelConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=16, intermediate_size=128)
    model, tok = build_tiny_model(catalog.titles, config)
    extend_vocabulary(tok, model, catalog.sids, item_texts=catalog.titles)
    return catalog, save_model(model, tok, tmp_path_factory.mktemp("kinds") / "model")


def top1_agreement(model_dir: Path, catalog: ItemCatalog, examples: list[RerankExample]) -> float:
    """Share of held-out prompts whose greedy, constrained (as served) answer puts the target first."""
    from gr2.reranker import GenerationSettings, Reranker

    reranker = Reranker.from_dir(model_dir, catalog, GenerationSettings(max_new_tokens=48, batch_size=len(examples),
                                                                        max_reasoning_tokens=2))
    answers = reranker.rerank(examples)
    assert all(a.valid for a in answers)
    return float(np.mean([a.order[0] == ex.target_index for a, ex in zip(answers, examples, strict=True)]))


@pytest.mark.slow
def test_sft_learns_a_trivial_rule(world, tmp_path):
    from gr2.recipes.common import TrainingSettings
    from gr2.recipes.sft import SFTStageConfig, sft
    from gr2.rerank_format import format_answer

    catalog, model_dir = world
    held_out = make_examples(48, seed=1)
    before = top1_agreement(model_dir, catalog, held_out)
    assert before < 0.5  # about 1/K: the untrained model does not follow the rule

    traces = []
    for ex in make_examples(1024, seed=0):
        order = [ex.target_index, *[i for i in range(K) if i != ex.target_index]]
        answer = format_answer("kind zero", catalog.sids.sids([ex.candidates[i] for i in order]))
        traces.append({"user": ex.user, "split": ex.split, "history": ex.history, "candidates": ex.candidates,
                       "target": ex.target, "answer": answer, "evidence": []})
    config = SFTStageConfig(emphasis_share=0.0, training=TrainingSettings(
        max_steps=100, batch_size=16, learning_rate=3e-3, save_steps=1000, logging_steps=25, max_length=512))
    sft(model_dir, traces, catalog, tmp_path, config)
    assert top1_agreement(tmp_path / "model", catalog, held_out) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("constraint", ["permutation", "candidates"])
def test_rl_raises_a_trivial_reward(world, tmp_path, constraint):
    """From the untrained policy, DAPO with the conditional reward learns to put the kind-0 candidate first.

    ``candidates`` (rollouts may repeat SIDs, so validity is earned too) is the sharper check: under
    ``permutation`` the allowed set shrinks with each SID already named, so even log-probs scored on
    the wrong tokens leak the reward into the softmax normaliser and still teach the rule."""
    from rl.dapo import DAPOConfig, train_rl

    catalog, model_dir = world
    held_out = make_examples(48, seed=1)
    assert top1_agreement(model_dir, catalog, held_out) < 0.5
    config = DAPOConfig(num_generations=8, prompts_per_step=4, max_steps=20, learning_rate=1e-3,
                        max_completion_length=64, soft_punish_cache=0, max_reasoning_tokens=2, save_steps=1000,
                        max_refill_rounds=1, rollout_constraint=constraint)
    metrics = train_rl(model_dir, make_examples(256, seed=0), catalog, tmp_path, config)
    reward = metrics["curves"]["mean reward"]["value"]
    assert len(reward) == 20 and np.mean(reward[-5:]) > np.mean(reward[:5]) + 0.1
    assert top1_agreement(tmp_path / "model", catalog, held_out) >= 0.9
