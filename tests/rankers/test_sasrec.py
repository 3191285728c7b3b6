"""SASRec: batching helpers, causality, backend agreement, training that learns, exact resume, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.errors import DataError
from rankers.errors import ConfigError
from rankers.evaluate import evaluate
from rankers.retrieval import PopularityRanker
from rankers.sasrec import SASRec, SASRecConfig
from rankers.train import SASRecScorer, collate, length_bucketed_batches, make_windows, pad_right, train_sasrec


def test_windows_cover_every_target_once():
    seq = np.arange(12)
    windows = make_windows([seq, np.array([5])], max_len=5)
    assert [w.tolist() for w in windows] == [[6, 7, 8, 9, 10, 11], [1, 2, 3, 4, 5, 6], [0, 1]]
    targets = sorted(t for w in windows for t in w[1:].tolist())
    assert targets == list(range(1, 12))  # every item but the first is a target exactly once


def test_padding_and_collate():
    items, lengths = pad_right([np.array([4, 5, 6]), np.array([7])], max_len=2)
    assert items.tolist() == [[6, 7], [8, 0]] and lengths.tolist() == [2, 1]  # last max_len items, shifted by 1
    x, y, n = collate([np.array([1, 2, 3]), np.array([4, 5])], torch.device("cpu"))
    assert x.tolist() == [[2, 3], [5, 0]] and y.tolist() == [[2, 3], [5, -1]] and n.tolist() == [2, 1]


def test_bucketed_batches_are_a_shuffled_partition_of_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), chunk_batches=4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.5 * np.mean([np.ptp(lengths[i:i + 32]) for i in range(0, 1000, 32)])


def _model(attention="sdpa", **kw):
    torch.manual_seed(0)
    return SASRec(30, SASRecConfig(hidden=16, heads=2, blocks=2, max_len=8, dropout=0.0, attention=attention, **kw))


def test_model_is_causal_and_ignores_padding():
    model = _model().eval()
    items = torch.tensor([[3, 4, 5, 6, 0, 0]])
    h = model.encode(items, torch.tensor([4]))
    changed = items.clone()
    changed[0, 3] = 9  # change the latest item: earlier positions' states must not move...
    h2 = model.encode(changed, torch.tensor([4]))
    # ...except through positions, which are counted from the latest item, so compare the same relative prefix.
    padded = model.encode(torch.tensor([[3, 4, 5, 6, 0, 0, 0, 0]]), torch.tensor([4]))
    torch.testing.assert_close(padded[0, :4], h[0, :4], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(h[0, 3], h2[0, 3])
    torch.testing.assert_close(h[0, :3], h2[0, :3], atol=1e-6, rtol=1e-6)


def test_naive_and_sdpa_models_agree():
    items = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 10, 11]])
    targets = torch.tensor([[3, 4, 5, -1, -1], [7, 8, 9, 10, 11]])
    lengths = torch.tensor([4, 5])
    results = []
    for backend in ("naive", "sdpa"):
        model = _model(backend)
        loss = model.loss(items, targets, lengths)
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-5, rtol=1e-4)


def test_sampled_softmax_loss_is_finite_and_trains():
    model = _model(loss="sampled", num_negatives=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y, n = collate([np.arange(i, i + 6) % 30 for i in range(30)], torch.device("cpu"))
    losses = []
    for _ in range(30):
        loss = model.loss(x, y, n)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


def test_config_errors_name_what_is_available():
    with pytest.raises(ConfigError, match=r"unknown attention backend 'fast'; available: \['naive', 'sdpa'"):
        SASRecConfig(attention="fast")
    with pytest.raises(ConfigError, match="unknown loss"):
        SASRecConfig(loss="bce")
    with pytest.raises(ConfigError, match=r"sasrec.hiden: unknown key"):
        SASRecConfig.from_dict({"hiden": 3})


def test_training_with_unavailable_backend_fails_clearly(synthetic, tmp_path):
    cfg = SASRecConfig(attention="flash_attn", epochs=1)
    with pytest.raises(ConfigError, match=r"not available on this device.*available: \['naive', 'sdpa'"):
        train_sasrec(synthetic.train_sequences(), synthetic.num_items, cfg, tmp_path, progress=False)


def _tiny_cfg(**kw):
    base = dict(hidden=32, heads=1, blocks=1, max_len=20, dropout=0.1, lr=5e-3, batch_size=16, epochs=3, patience=10)
    return SASRecConfig(**{**base, **kw})


def test_learns_synthetic_walk_and_resume_is_exact(synthetic, tmp_path):
    train, valid = synthetic.train_sequences(), synthetic.eval_examples("valid")
    full = train_sasrec(train, synthetic.num_items, _tiny_cfg(), tmp_path / "full", valid=valid, progress=False)
    losses = [h["loss"] for h in full.history]
    assert losses[-1] < losses[0]
    pop = evaluate(PopularityRanker().fit(train, synthetic.num_items), valid)
    assert full.history[-1]["valid"]["ndcg@10"] > pop["ndcg@10"] + 0.2

    part = train_sasrec(train, synthetic.num_items, _tiny_cfg(epochs=1), tmp_path / "part", valid=valid, progress=False)
    assert part.epochs_run == 1
    with pytest.raises(DataError, match="different config"):
        train_sasrec(train, synthetic.num_items, _tiny_cfg(epochs=3, lr=1e-3), tmp_path / "part", valid=valid,
                     resume=True, progress=False)
    # The epoch budget may grow on resume; the result equals the uninterrupted run.
    resumed = train_sasrec(train, synthetic.num_items, _tiny_cfg(), tmp_path / "part", valid=valid, resume=True,
                           progress=False)
    assert resumed.epochs_run == 3 and len(resumed.history) == 3
    assert [h["loss"] for h in resumed.history] == pytest.approx(losses, rel=1e-6)
    final_full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    final_resumed = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["model"]
    for key in final_full:
        torch.testing.assert_close(final_full[key], final_resumed[key], atol=1e-6, rtol=1e-6)


def test_early_stopping_on_a_valid_subset(synthetic, tmp_path):
    result = train_sasrec(synthetic.train_sequences(), synthetic.num_items, _tiny_cfg(epochs=1, valid_users=50),
                          tmp_path, valid=synthetic.eval_examples("valid"), progress=False)
    assert result.history[0]["valid"]["users"] == 50


def test_resume_without_checkpoint_is_an_error(synthetic, tmp_path):
    with pytest.raises(DataError, match="nothing to resume"):
        train_sasrec(synthetic.train_sequences(), synthetic.num_items, _tiny_cfg(), tmp_path, resume=True)


@pytest.mark.slow
def test_short_training_on_ml100k_beats_popularity(ml100k, tmp_path):
    cfg = SASRecConfig(epochs=2, lr=2e-3, batch_size=64)
    result = train_sasrec(ml100k.train_sequences(), ml100k.num_items, cfg, tmp_path, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[1] < losses[0]
    valid = ml100k.eval_examples("valid")
    sasrec = evaluate(SASRecScorer(result.model), valid)
    pop = evaluate(PopularityRanker().fit(ml100k.train_sequences(), ml100k.num_items), valid)
    assert sasrec["ndcg@10"] > 1.3 * pop["ndcg@10"], (sasrec, pop)


def test_content_features_train_and_reload(synthetic, tmp_path):
    from rankers.train import load_model

    content = np.random.default_rng(0).normal(size=(synthetic.num_items, 12)).astype(np.float32)
    with pytest.raises(ConfigError, match="gr2 data embed"):
        SASRec(synthetic.num_items, _tiny_cfg(content=True))
    result = train_sasrec(synthetic.train_sequences(), synthetic.num_items, _tiny_cfg(content=True, epochs=1),
                          tmp_path, progress=False, content=content)
    reloaded = load_model(tmp_path)
    torch.testing.assert_close(reloaded.content[1:], torch.from_numpy(content))
    hist = synthetic.eval_examples("test").histories[:5]
    np.testing.assert_allclose(SASRecScorer(reloaded).score(hist), SASRecScorer(result.model).score(hist), atol=1e-5)


def test_learning_rate_schedules():
    from rankers.train import learning_rate

    assert learning_rate(SASRecConfig(lr=1e-3), 7.3) == 1e-3
    cos = SASRecConfig(lr=1e-3, lr_schedule="cosine", epochs=11)
    assert learning_rate(cos, 0.5) == pytest.approx(5e-4)  # warmup
    assert learning_rate(cos, 1.0) == pytest.approx(1e-3)
    assert learning_rate(cos, 6.0) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5)) and learning_rate(cos, 11) == 5e-5
    with pytest.raises(ConfigError, match="available: \\['constant', 'cosine'\\]"):
        SASRecConfig(lr_schedule="step")
