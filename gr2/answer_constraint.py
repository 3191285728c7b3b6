"""Constrained decoding for ``transformers`` generate: the answer can only be a valid permutation.

Serving runs the same state machine inside vLLM (``gr2.engines.permutation_constraint``). Unlike a
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

from collections.abc import Generator, Sequence

import torch
from transformers import LogitsProcessor

from gr2.rerank_format import INDEX_SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN, answer_keys
from tokenizer.sid import SID_RE

HEAD, SEPARATOR, TAIL = '\n{"recommendations": ["', '", "', '"]}'


def prompt_candidate_sids(prompt: str) -> list[str]:
    """The candidate SIDs a rendered rerank prompt lists (after its "Candidates (" header), in order."""
    return [m.group(0) for m in SID_RE.finditer(prompt[prompt.rfind("Candidates ("):])]


def prompt_answer_keys(prompt: str) -> list[str]:
    """How an answer to a rendered rerank prompt names its candidates: the listed SIDs, or their numbers when
    the prompt's system message asks for numbers (``answer_format: index``)."""
    return answer_keys(prompt_candidate_sids(prompt), "index" if INDEX_SYSTEM_PROMPT in prompt else "sid")


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
        # a SID cannot open inside the reasoning; list numbers (answer_format index) are ordinary text there
        sid_starts = {ids[0] for row, keys in zip(self.candidates, candidate_sids, strict=True)
                      for ids, key in zip(row, keys, strict=True) if SID_RE.fullmatch(key)}
        self.banned_in_reasoning = sorted({self.end, *sid_starts})

    def token_budget(self, row: int) -> int:
        """The most tokens an answer for ``row`` can take: full reasoning, every SID, end of turn."""
        sids = self.candidates[row]
        fixed = len(self.open) + self.max_reasoning_tokens + len(self.close) + len(self.head) + len(self.tail) + 1
        return fixed + sum(map(len, sids)) + (len(sids) - 1) * len(self.separator)

    def allowed(self, row: int, generated: Sequence[int]) -> list[int] | None:
        """Token ids allowed next for one row; None = free reasoning (anything but the banned ids)."""
        walk = self._walk(row)
        allowed = next(walk)
        for token in generated:
            allowed = walk.send(token)
        return allowed

    def allowed_along(self, row: int, tokens: Sequence[int]) -> list[list[int] | None]:
        """``allowed(row, tokens[:i])`` for every ``i`` up to ``len(tokens)``, in one pass: scoring a sampled
        completion under the mask it was decoded with needs the allowed set at each of its positions, and
        calling ``allowed`` per position would replay the prefix every time."""
        walk = self._walk(row)
        sets = [next(walk)]
        sets.extend(walk.send(token) for token in tokens)
        return sets

    def cursor(self, row: int) -> ConstraintCursor:
        """An incremental walk for one row: each step feeds only the tokens generated since the last one."""
        return ConstraintCursor(self, row)

    def _walk(self, row: int) -> Generator[list[int] | None, int, None]:
        """The state machine: yields the allowed set (None = free reasoning), is sent the token taken. It never
        ends: after the answer's tail only end of turn is allowed."""
        for token in self.open:
            yield [token]
        reasoning: list[int] = []
        n = len(self.close)
        while tuple(reasoning[-n:]) != self.close:
            # a started closing tag must be finished; a reasoning at its limit must start one
            partial = next((m for m in range(n - 1, 0, -1) if tuple(reasoning[-m:]) == self.close[:m]), 0)
            forced = partial or len(reasoning) >= self.max_reasoning_tokens
            reasoning.append((yield [self.close[partial]] if forced else None))
        yield from self._answer(row)

    def _answer(self, row: int) -> Generator[list[int], int, None]:
        """After ``</think>``: head, one candidate SID per slot (``unique``: one not yet named), separators, tail."""
        candidates = self.candidates[row]
        remaining = list(candidates)
        consumed = 0  # tokens of the next fixed segment already taken while closing a key (see below)
        for slot in range(len(candidates) + 1):
            left = len(candidates) - slot
            segment = self.head if slot == 0 else self.separator if left else self.tail
            for token in segment[consumed:]:
                yield [token]  # forced, so the token sent back is this one
            consumed = 0
            if not left:
                break
            choices = remaining if self.unique else candidates
            follow = (self.separator if left > 1 else self.tail)[0]
            prefix: list[int] = []
            while True:
                live = [c for c in choices if c[:len(prefix)] == tuple(prefix)]
                done = [c for c in live if len(c) == len(prefix)]
                extend = {c[len(prefix)] for c in live if len(c) > len(prefix)}
                if done and not extend:
                    chosen = done[0]
                    break
                # a key that is a prefix of another ("1" of "10" when digits are single tokens) ends where the
                # next segment starts: offer both, and an end taken here is that segment's first token
                token = yield sorted(extend | ({follow} if done else set()))
                if done and token == follow and token not in extend:
                    chosen, consumed = done[0], 1
                    break
                prefix.append(token)
            if self.unique:
                remaining.remove(chosen)
        while True:
            yield [self.end]

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


class ConstraintCursor:
    """One row's state machine kept between decoding steps, so a step costs its new tokens, not a replay of
    the whole output (``allowed`` re-walks every generated token at every step: quadratic in the answer).

    ``advance(generated)`` takes the row's whole output so far, as decoders hand it over, and sends the
    state machine only the part it has not seen; an output shorter than what was consumed (a restarted
    request) replays from the start."""

    def __init__(self, constraint: RerankAnswerConstraint, row: int):
        self.constraint, self.row = constraint, row
        self._restart()

    def _restart(self) -> None:
        self._walk = self.constraint._walk(self.row)
        self._allowed = next(self._walk)
        self.consumed = 0

    def advance(self, generated: Sequence[int]) -> list[int] | None:
        """The allowed set after ``generated`` (None = free reasoning), as ``constraint.allowed(row, generated)``."""
        if len(generated) < self.consumed:
            self._restart()
        for token in generated[self.consumed:]:
            self._allowed = self._walk.send(int(token))
        self.consumed = len(generated)
        return self._allowed
