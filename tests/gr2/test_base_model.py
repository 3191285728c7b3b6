"""The tiny Qwen3 base model: tokenizer trained on item text, chat format, save/load, a forward pass."""

from __future__ import annotations

import pytest
import torch

from gr2.base_model import IM_END, THINK_OPEN, build_tiny_model, load_base_model
from gr2.rerank_format import PromptItem, build_messages, format_answer


@pytest.fixture(scope="module")
def tiny(ml100k):
    return build_tiny_model(ml100k.item_texts())


def test_tokenizer_round_trip_and_specials(tiny):
    _, tok = tiny
    text = "Toy Story (1995) | Animation Children's Comedy — naïve 東京"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: any text survives
    for special in (IM_END, THINK_OPEN, "<start_important>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    # tags survive the decoding vLLM does by default; chat markers do not
    ids = tok("<|im_start|><think>x</think><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>x</think>"
    # titles it was trained on compress well
    assert len(tok("Star Wars (1977)")["input_ids"]) <= 6


def test_chat_template_and_forward(tiny):
    model, tok = tiny
    items = [PromptItem("<|sid_begin|><s_a_1><|sid_end|>", "Toy Story (1995)")]
    messages = build_messages(items, items) + [{"role": "assistant", "content": format_answer("x", [items[0].sid])}]
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
    rendered = tok.decode(ids[0])
    assert rendered.startswith("<|im_start|>system\n") and rendered.rstrip().endswith(IM_END)
    params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < params < 8_000_000
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], len(tok))
    assert abs(out.loss.item() - torch.log(torch.tensor(float(len(tok)))).item()) < 1.5  # untrained: ~uniform


def test_save_and_reload(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model2, tok2 = load_base_model(tmp_path)
    assert tok2.chat_template == tok.chat_template and len(tok2) == len(tok)
    ids = torch.tensor([tok("Fargo (1996)")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model2(ids).logits)


def test_bad_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_base_model(tmp_path / "Qwen3-0.6B")
    with pytest.raises(ValueError, match="needs item texts"):
        load_base_model("tiny")
