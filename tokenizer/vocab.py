"""Teach a Hugging Face tokenizer + causal LM the semantic-ID tokens.

Tokens are added as ordinary *added tokens* (never split, not normalised) rather than special
tokens: ``decode(..., skip_special_tokens=True)``, which vLLM does by default, would otherwise
strip the SIDs out of the model's answers before the rerank parser sees them.

Initialisation of the new embedding rows (``init``):
- ``"text"`` (the default when ``item_texts`` is given): the row of code token ``<s_a_12>`` is the
  mean, over the items whose level-a code is 12, of the mean input embedding of the item's text
  tokens. Each code token starts where its items' words already are in the LM's space, so
  mid-training's SID <-> text tasks start from a useful point instead of from nothing.
- ``"mean"``: the mean of the existing rows (Hewitt 2021): new tokens start with an average,
  not an outsized, logit, so the LM's distribution barely moves until training uses them.
Markers, codes no item uses and, with ``"text"``, the output rows of an untied head get the mean.

Every new row then gets Gaussian noise with the covariance of the existing rows times ``noise``
(Hewitt 2021 likewise samples new rows with the existing rows' covariance; scale 1 here so that
tokens start apart). Without it the rows are near copies of one another: means over hundreds of
items all sit near the global mean (on ML-100K, same-level code tokens started at cosine 0.6 on
average, up to 0.99 pairwise, and stayed so through mid-training), and a model that cannot tell
``<s_c_50>`` from ``<s_c_55>`` apart cannot copy a candidate's SID into its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.errors import DataError
from tokenizer.sid import SemanticIDs, code_token, format_sid


@dataclass
class VocabExtension:
    token_ids: dict[str, int]  # every SID token -> its id in the extended tokenizer
    added: int  # tokens that were new to the tokenizer
    old_vocab_size: int  # embedding rows before
    new_vocab_size: int  # embedding rows after
    init: str
    new_ids: list[int] = field(default_factory=list)  # ids of the tokens that were new (rows LoRA may train)


def extend_vocabulary(hf_tokenizer: Any, hf_model: Any, sid_tokenizer: SemanticIDs,
                      item_texts: Sequence[str] | None = None, init: str = "auto",
                      pad_to_multiple_of: int | None = None, noise: float = 1.0, seed: int = 0) -> VocabExtension:
    """Add the SID tokens to ``hf_tokenizer``, grow ``hf_model``'s embeddings and initialise the new rows."""
    import torch
    from tokenizers import AddedToken

    if init == "auto":
        init = "text" if item_texts is not None else "mean"
    if init not in ("mean", "text"):
        raise ValueError(f"init must be 'auto', 'mean' or 'text', got {init!r}")
    if init == "text" and (item_texts is None or len(item_texts) != len(sid_tokenizer)):
        raise DataError(f"init='text' needs one text per item: got {0 if item_texts is None else len(item_texts)} "
                        f"texts for {len(sid_tokenizer)} items")
    emb = hf_model.get_input_embeddings()
    old_rows = emb.weight.shape[0]
    if len(hf_tokenizer) > old_rows:
        raise DataError(f"the tokenizer has {len(hf_tokenizer)} tokens but the model only {old_rows} embedding rows")
    text_ids = None
    if init == "text":  # tokenized before the SID tokens exist, so item text can never contain them
        text_ids = hf_tokenizer(list(item_texts), add_special_tokens=False)["input_ids"]

    tokens = sid_tokenizer.tokens()
    vocab = hf_tokenizer.get_vocab()
    new = [t for t in tokens if t not in vocab]
    hf_tokenizer.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False,
                                        lstrip=False, rstrip=False) for t in new])
    token_ids = {t: hf_tokenizer.convert_tokens_to_ids(t) for t in tokens}
    _check_round_trip(hf_tokenizer, sid_tokenizer, token_ids)

    rows = max(len(hf_tokenizer), old_rows)
    hf_model.resize_token_embeddings(rows, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    new_ids = torch.tensor([token_ids[t] for t in new], dtype=torch.long)
    with torch.no_grad():
        in_w = hf_model.get_input_embeddings().weight
        out_emb = hf_model.get_output_embeddings()
        matrices = [in_w] + ([out_emb.weight] if out_emb is not None and out_emb.weight is not in_w else [])
        for i, w in enumerate(matrices):
            mean = w[:old_rows].mean(0)
            if len(new_ids):
                w[new_ids] = mean
            if init == "text" and i == 0 and len(new_ids):
                _text_init(w, old_rows, text_ids, sid_tokenizer, token_ids, set(new))
            if noise > 0 and len(new_ids):
                w[new_ids] += _covariance_noise(w[:old_rows], len(new_ids), noise, seed + i)
    return VocabExtension(token_ids, len(new), old_rows, hf_model.get_input_embeddings().weight.shape[0], init,
                          [token_ids[t] for t in new])


def _text_init(w: Any, old_rows: int, text_ids: list[list[int]], sid: SemanticIDs, token_ids: dict[str, int],
               new: set[str]) -> None:
    """Row of each code token = mean over its items of the item's mean text-token embedding."""
    import torch

    table = w[:old_rows].detach().float().numpy()
    mean = table.mean(0)
    item_vecs = np.stack([table[ids].mean(0) if len(ids) else mean for ids in text_ids])
    for level, size in enumerate(sid.level_sizes):
        col = sid.codes[:, level]
        sums = np.zeros((size, table.shape[1]))
        np.add.at(sums, col, item_vecs)
        counts = np.bincount(col, minlength=size)
        for code in np.flatnonzero(counts):
            tok = code_token(level, int(code))
            if tok in new:
                w[token_ids[tok]] = torch.as_tensor(sums[code] / counts[code], dtype=w.dtype)


def _covariance_noise(rows: Any, n: int, scale: float, seed: int) -> Any:
    """``n`` draws from N(0, scale * covariance of ``rows``), reproducible from ``seed``."""
    import torch

    x = rows.detach().double()
    cov = torch.cov(x.T) * scale + 1e-8 * torch.eye(x.shape[1], dtype=torch.float64)
    z = torch.randn(n, x.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (z @ torch.linalg.cholesky(cov).T).to(rows.dtype)


def _check_round_trip(hf_tokenizer: Any, sid: SemanticIDs, token_ids: dict[str, int]) -> None:
    """A SID must tokenize to exactly its tokens; a normaliser or pre-tokeniser that splits them is an error."""
    sample = format_sid(sid.codes[0]) if len(sid) else None
    if sample is None:
        return
    ids = hf_tokenizer(sample, add_special_tokens=False)["input_ids"]
    expected = [token_ids[t] for t in ["<|sid_begin|>", *(code_token(lv, c) for lv, c in
                                                          enumerate(sid.codes_of(0))), "<|sid_end|>"]]
    if list(ids) != expected:
        raise DataError(f"the tokenizer splits SID tokens ({sample} -> {ids}, expected {expected})")
