"""The stage-1 model as a recommender on its own: the likelihood of an item's SID after a user's history.

Stage 1 trains next-SID the way SASRec trains: over every position of every training sequence. A
``sid_sequence`` example is one conversation whose assistant turn is the user's whole SID sequence
(oldest first), so teacher forcing puts a next-SID loss on every item at once. The same format then
scores items: the prompt, the history's SIDs as the start of the assistant turn, and the item's SID
as its continuation. Two uses:

- ``SIDLikelihood.candidate_scores``: the log-likelihood of each of the pre-ranker's candidates, a
  reranker with no generation (``LikelihoodReranker``), a baseline row and a cheap fallback;
- ``SIDLikelihood.top_items``: beam search restricted to the catalogue's SIDs, a full-ranking
  recommender measured with the same HR@10 / NDCG@10 as SASRec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import ParsedAnswer, format_answer, parse_answer
from tokenizer.sid import SemanticIDs

SEQUENCE_PROMPT = "User items, oldest first:"  # short: Games sequences are ~6 items of 6 tokens


def sequence_conversation(sids: Sequence[str]) -> dict:
    """A whole SID sequence as a prompt/completion pair: the loss covers every item's SID."""
    return {"prompt": [{"role": "user", "content": SEQUENCE_PROMPT}],
            "completion": [{"role": "assistant", "content": "".join(sids)}]}


def tail_logprobs(model, rows: Sequence[Sequence[int]], span: int, pad: int):  # noqa: ANN201 - a torch tensor
    """(rows, span) log-probabilities of each row's last ``span`` tokens given what precedes them, in one forward.

    Left padding puts every row's scored tokens in the last ``span`` positions, so the LM head runs on those
    alone (the full-vocabulary logits of every prefix position would cost far more); position ids restart at 0
    after the padding, as in training."""
    import torch

    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = torch.tensor(list(row))
        mask[r, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=span + 1).logits
    return torch.log_softmax(logits.float()[:, :-1], dim=-1).gather(-1, ids[:, -span:, None])[..., 0]


@dataclass
class LikelihoodSettings:
    max_history: int = 50  # most recent items in the prefix (SASRec's max_len)
    batch_size: int = 32  # users a forward pass (x K candidate rows)
    beams: int = 20  # full ranking: beams kept (history items are dropped from them afterwards)


class SIDLikelihood:
    """Log-likelihood of SIDs given a history, from a model trained on ``sid_sequence`` examples."""

    def __init__(self, model, tokenizer, sids: SemanticIDs, settings: LikelihoodSettings | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.sids = sids
        self.settings = settings or LikelihoodSettings()
        header = tokenizer.apply_chat_template([{"role": "user", "content": SEQUENCE_PROMPT}], tokenize=False,
                                               add_generation_prompt=True)
        self._header = self._encode(header)
        # every SID is one token per marker and level (added tokens), so item i is a fixed token row
        self._item_tokens = np.asarray([self._encode(sids.sid(i)) for i in range(len(sids))], dtype=np.int64)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prefix(self, history: Sequence[int]) -> list[int]:
        recent = list(history)[-self.settings.max_history:]
        return self._header + self._item_tokens[recent].ravel().tolist()

    def candidate_scores(self, histories: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]],
                         progress: bool = False) -> np.ndarray:
        """(users, K) log P(candidate's SID | history), summed over its tokens."""
        n, k = len(histories), len(candidates[0]) if candidates else 0
        out = np.zeros((n, k), dtype=np.float64)
        pad = self.tokenizer.pad_token_id or 0
        span, step = self._item_tokens.shape[1], self.settings.batch_size
        # users in order of history length: a batch pads to its longest prefix, and lengths vary ~10x
        order = np.argsort([min(len(h), self.settings.max_history) for h in histories], kind="stable")
        for lo in tqdm(range(0, n, step), desc="SID likelihood", unit="batch", disable=not progress):
            users = order[lo:lo + step]
            rows = [self.prefix(histories[u]) + self._item_tokens[item].tolist() for u in users
                    for item in candidates[u]]
            logp = tail_logprobs(self.model, rows, span, pad)
            out[users] = logp.sum(-1).view(-1, k).double().numpy()
        return out

    def top_items(self, histories: Sequence[Sequence[int]], k: int = 10, exclude_history: bool = True,
                  progress: bool = False) -> np.ndarray:
        """(users, k) items by beam search over the catalogue's SIDs (history items dropped, as SASRec's
        full ranking excludes them); -1 where fewer than k beams survive."""
        import torch

        trie: dict[tuple[int, ...], list[int]] = {}
        for row in self._item_tokens.tolist():
            for depth in range(len(row)):
                trie.setdefault(tuple(row[:depth]), []).append(row[depth])
        trie = {key: sorted(set(v)) for key, v in trie.items()}
        index = {tuple(row): i for i, row in enumerate(self._item_tokens.tolist())}
        span, beams = self._item_tokens.shape[1], max(self.settings.beams, k)
        pad = self.tokenizer.pad_token_id or 0
        out = np.full((len(histories), k), -1, dtype=np.int64)
        step = max(1, self.settings.batch_size // 4)  # x beams rows a step
        order = np.argsort([min(len(h), self.settings.max_history) for h in histories], kind="stable")
        for lo in tqdm(range(0, len(histories), step), desc="SID beam search", unit="batch", disable=not progress):
            users = order[lo:lo + step]
            prefixes = [self.prefix(histories[u]) for u in users]
            width = max(map(len, prefixes))
            ids = torch.full((len(prefixes), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, p in enumerate(prefixes):  # left padding for generation
                ids[r, width - len(p):] = torch.tensor(p)
                mask[r, width - len(p):] = 1

            def allowed(_batch: int, sequence: torch.Tensor, start: int = width) -> list[int]:
                return trie.get(tuple(sequence[start:].tolist()), [pad])

            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=span, min_new_tokens=span,
                    num_beams=beams, num_return_sequences=beams, do_sample=False, length_penalty=0.0,
                    prefix_allowed_tokens_fn=allowed, pad_token_id=pad, eos_token_id=None, early_stopping=True)
            tails = generated[:, width:].view(len(prefixes), beams, -1).tolist()
            for u, rows in zip(users, tails, strict=True):
                seen = set(histories[u]) if exclude_history else set()
                picks = [index[t] for t in map(tuple, rows) if t in index and index[t] not in seen]
                picks = list(dict.fromkeys(picks))[:k]
                out[u, :len(picks)] = picks
        return out


class LikelihoodReranker:
    """The ``Reranker`` interface with no generation: candidates ordered by their SID's likelihood.

    Its answer is written in the rerank format (empty reasoning), so evaluation and serving treat it
    like any reranker's; every answer is a valid permutation."""

    def __init__(self, scorer: SIDLikelihood, catalog: ItemCatalog):
        self.scorer = scorer
        self.catalog = catalog

    @classmethod
    def from_dir(cls, model_dir, catalog: ItemCatalog, settings: LikelihoodSettings | None = None):
        from gr2.base_model import load_base_model

        model, tokenizer = load_base_model(model_dir)
        return cls(SIDLikelihood(model, tokenizer, catalog.sids, settings), catalog)

    def rerank(self, examples: Sequence[RerankExample], progress: bool = False) -> list[ParsedAnswer]:
        scores = self.scorer.candidate_scores([ex.history for ex in examples], [ex.candidates for ex in examples],
                                              progress=progress)
        answers = []
        for ex, row in zip(examples, scores, strict=True):
            order = np.argsort(-row, kind="stable")
            sids = self.catalog.answer_keys(ex)
            answers.append(parse_answer(format_answer("", [sids[i] for i in order]), sids))
        return answers
