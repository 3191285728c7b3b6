"""extend_vocabulary on a tiny random Qwen3 and a WordLevel tokenizer trained here on ML-100K titles."""

import numpy as np
import pytest
import torch

from data.errors import DataError
from tokenizer import SemanticIDs, extend_vocabulary


@pytest.fixture(scope="module")
def sids(ml100k_kmeans_dir):
    from tokenizer import load_semantic_ids

    return load_semantic_ids(ml100k_kmeans_dir)


def make_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"], min_frequency=2))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def make_model(vocab_size, tie):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                         tie_word_embeddings=tie)
    return Qwen3ForCausalLM(config).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_mean_init(ml100k, sids, tie):
    tok = make_tokenizer(ml100k.item_texts())
    model = make_model(len(tok), tie)
    old = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    ext = extend_vocabulary(tok, model, sids, noise=0)

    n_new = 2 + sum(sids.level_sizes)
    assert ext.init == "mean" and ext.added == n_new and ext.new_vocab_size == len(old) + n_new == len(tok)
    w = model.get_input_embeddings().weight
    assert torch.equal(w[: len(old)], old)  # existing rows untouched
    assert torch.allclose(w[len(old):], old.mean(0).expand(n_new, -1))
    if not tie:
        out = model.get_output_embeddings().weight
        assert torch.allclose(out[len(old):], old_out.mean(0).expand(n_new, -1))
    # A SID is exactly its tokens, and survives decoding with special tokens skipped (as vLLM does).
    sid = sids.sid(5)
    ids = tok(f"watched {sid} next", add_special_tokens=False)["input_ids"]
    assert [ext.token_ids[t] for t in ("<|sid_begin|>", "<|sid_end|>")] == [ids[1], ids[6]]
    assert sid in tok.decode(ids, skip_special_tokens=True).replace(" ", "")
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok)) and torch.isfinite(logits).all()


def test_text_init_puts_code_tokens_on_their_items_words(ml100k, sids):
    texts = ml100k.item_texts()
    tok = make_tokenizer(texts)
    model = make_model(len(tok), tie=False)
    table = model.get_input_embeddings().weight.detach().clone().numpy()
    ext = extend_vocabulary(tok, model, sids, item_texts=texts, pad_to_multiple_of=64, noise=0)
    assert ext.init == "text" and ext.new_vocab_size % 64 == 0
    w = model.get_input_embeddings().weight.detach().numpy()

    code = int(sids.codes[0, 0])
    members = np.flatnonzero(sids.codes[:, 0] == code)
    per_item = [table[tok(texts[i], add_special_tokens=False)["input_ids"]].mean(0) for i in members]
    assert np.allclose(w[ext.token_ids[f"<s_a_{code}>"]], np.mean(per_item, axis=0), atol=1e-5)
    # Different first-level codes get different starting points; markers start at the mean.
    other = int(next(c for c in sids.codes[:, 0] if c != code))
    assert not np.allclose(w[ext.token_ids[f"<s_a_{code}>"]], w[ext.token_ids[f"<s_a_{other}>"]])
    assert np.allclose(w[ext.token_ids["<|sid_begin|>"]], table.mean(0), atol=1e-6)


def test_second_call_adds_nothing(ml100k, sids):
    tok = make_tokenizer(ml100k.item_texts())
    model = make_model(len(tok), tie=True)
    first = extend_vocabulary(tok, model, sids)
    second = extend_vocabulary(tok, model, sids)
    assert second.added == 0 and second.token_ids == first.token_ids and len(tok) == first.new_vocab_size


def test_bad_arguments(ml100k, sids):
    tok = make_tokenizer(ml100k.item_texts())
    model = make_model(len(tok), tie=True)
    with pytest.raises(DataError, match="one text per item"):
        extend_vocabulary(tok, model, sids, item_texts=["only one"], init="text")
    with pytest.raises(ValueError, match="init must be"):
        extend_vocabulary(tok, model, sids, init="zeros")
    small = make_model(10, tie=True)
    with pytest.raises(DataError, match="embedding rows"):
        extend_vocabulary(tok, small, SemanticIDs(np.array([[0], [1]]), (2,)))


def test_noise_makes_code_tokens_distinguishable(ml100k, sids):
    """Text means of many items crowd around one point; the covariance noise pulls the rows apart."""
    texts = ml100k.item_texts()

    def level_b_rows(noise):
        tok = make_tokenizer(texts)
        model = make_model(len(tok), tie=True)
        ext = extend_vocabulary(tok, model, sids, item_texts=texts, noise=noise)
        ids = [ext.token_ids[f"<s_b_{c}>"] for c in sorted(set(sids.codes[:, 1].tolist()))]
        return model.get_input_embeddings().weight.detach()[ids], model

    def max_cosine(rows):
        x = torch.nn.functional.normalize(rows, dim=1)
        return (x @ x.T).fill_diagonal_(-1).max().item()

    crowded, _ = level_b_rows(0)
    spread, model = level_b_rows(1.0)
    assert max_cosine(crowded) > 0.9 > max_cosine(spread)
    assert torch.equal(spread, level_b_rows(1.0)[0])  # seeded: the same rows every time
    old = model.get_input_embeddings().weight[: len(model.get_input_embeddings().weight) - len(spread)]
    assert spread.norm(dim=1).mean() < 3 * old.norm(dim=1).mean()  # typical size, not outsized
