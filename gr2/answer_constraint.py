"""Constrained decoding for ``transformers`` generate: the answer can only be a valid permutation.

Serving runs the same state machine inside vLLM (``serving.permutation_constraint``). Unlike a
grammar (``rerank_format.answer_grammar``), which fixes only the shape (``<think>`` free text
``</think>`` then the JSON list), it tracks which candidates were already named, so every answer is
an exact permutation of the request's candidates. Free reasoning may not open a SID or end the
turn, and is cut at ``max_reasoning_tokens``.

The answer is decoded as fixed token segments (encoded one by one: SIDs, tags and ``<|...|>``
markers are added tokens, so segment-wise encoding equals the natural tokenization the model was
trained on) with a choice among the remaining candidates' SID token sequences at each slot.
With ``unique=False`` every slot may name any candidate, repeats included: the answer has the
right shape and only candidate SIDs, but whether it is a permutation is up to the model (RL uses
this to make format validity something the policy earns).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from gr2.rerank_format import THINK_CLOSE, THINK_OPEN
from tokenizer.sid import SID_RE

HEAD, SEPARATOR, TAIL = '\n{"recommendations": ["', '", "', '"]}'


def prompt_candidate_sids(prompt: str) -> list[str]:
    """The candidate SIDs a rendered rerank prompt lists (after its "Candidates (" header), in order."""
    return [m.group(0) for m in SID_RE.finditer(prompt[prompt.rfind("Candidates ("):])]


class RerankAnswerConstraint(LogitsProcessor):
    def __init__(self, tokenizer, candidate_sids: Sequence[Sequence[str]], prompt_length: int,
                 max_reasoning_tokens: int = 160, unique: bool = True):
        encode = lambda text: tuple(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
        self.open, self.close = encode(THINK_OPEN), encode(THINK_CLOSE)
        self.head, self.separator, self.tail = encode(HEAD), encode(SEPARATOR), encode(TAIL)
        self.candidates = [[encode(sid) for sid in row] for row in candidate_sids]
        self.prompt_length = prompt_length
        self.max_reasoning_tokens = max_reasoning_tokens
        self.unique = unique
        eos = tokenizer.eos_token_id
        self.end = eos if isinstance(eos, int) else eos[0]
        sid_starts = {ids[0] for row in self.candidates for ids in row}
        self.banned_in_reasoning = sorted({self.end, *sid_starts})

    def token_budget(self, row: int) -> int:
        """The most tokens an answer for ``row`` can take: full reasoning, every SID, end of turn."""
        sids = self.candidates[row]
        fixed = len(self.open) + self.max_reasoning_tokens + len(self.close) + len(self.head) + len(self.tail) + 1
        return fixed + sum(map(len, sids)) + (len(sids) - 1) * len(self.separator)

    def allowed(self, row: int, generated: list[int]) -> list[int] | None:
        """Token ids allowed next for one row; None = free reasoning (anything but the banned ids)."""
        n = len(self.open)
        if len(generated) < n:
            return [self.open[len(generated)]]
        rest = generated[n:]
        close_at = next((i for i in range(len(rest) - len(self.close) + 1)
                         if tuple(rest[i:i + len(self.close)]) == self.close), None)
        if close_at is None:
            partial = next((m for m in range(len(self.close) - 1, 0, -1)
                            if tuple(rest[-m:]) == self.close[:m]), 0) if rest else 0
            if partial or len(rest) >= self.max_reasoning_tokens:
                return [self.close[partial]]
            return None
        return self._answer_step(row, rest[close_at + len(self.close):])

    def _answer_step(self, row: int, tokens: list[int]) -> list[int]:
        candidates = self.candidates[row]
        remaining = list(candidates)
        pos = 0
        for slot in range(len(candidates) + 1):
            left = len(candidates) - slot
            fixed = self.head if slot == 0 else self.separator if left else self.tail
            for tok in fixed:
                if pos == len(tokens):
                    return [tok]
                pos += 1  # forced earlier, so it matches
            if not left:
                return [self.end]
            choices = remaining if self.unique else candidates
            prefix: list[int] = []
            while True:
                live = [c for c in choices if tuple(c[:len(prefix)]) == tuple(prefix)]
                done = [c for c in live if len(c) == len(prefix)]
                if done:
                    if self.unique:
                        remaining.remove(done[0])
                    break
                if pos == len(tokens):
                    return sorted({c[len(prefix)] for c in live})
                prefix.append(tokens[pos])
                pos += 1
        return [self.end]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        masked = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            allowed = self.allowed(row, input_ids[row, self.prompt_length:].tolist())
            if allowed is None:
                masked[row] = scores[row]
                masked[row, self.banned_in_reasoning] = float("-inf")
            else:
                masked[row, allowed] = scores[row, allowed]
        return masked
