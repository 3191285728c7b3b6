"""From unit scores to emphasis spans under a budget, and spans to prompts.

The history is a list of item lines (``gr2.rerank_format.item_line``: SID and title), each cut into
tokens by the actor's tokenizer (``HistoryLayout``). A *unit* is what the actor decides about: a
whole item line (granularity ``items``, the default: our prompts are item lists) or one token
(``tokens``: a window of +-``window`` tokens around each chosen token, as HiLight's authors do).

Every method (the actor and each baseline) proposes units in order of preference; ``choose_spans``
keeps them while the budget allows: at most ``Budget.share`` of the history's tokens and at most
``Budget.max_spans`` spans, never overlapping. Spans are character ranges inside one item line, so
tags go into the otherwise unaltered text and never touch a candidate (``render_messages``). The
actor's log-probability is taken over ``rendered_units``: the spans that were actually rendered,
not the mask that was sampled (a sampled unit the budget dropped was not shown to the solver).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Gt, Le

from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import item_line

Granularity = Literal["items", "tokens"]
RANK_LINE = "Rank all candidates."


@dataclass
class Budget:
    """What any emphasis may mark: the same for the actor and every baseline."""

    share: Annotated[float, Gt(0), Le(1)] = 0.25  # of the history's tokens (the actor tokenizer's)
    max_spans: Annotated[int, Ge(1)] = 5


@dataclass(frozen=True)
class Span:
    """Characters ``start:end`` of history item ``item``'s line, covering ``tokens`` of its tokens."""

    item: int
    start: int
    end: int
    tokens: int


@dataclass
class HistoryLayout:
    """The history's item lines and where each line's tokens sit (character offsets within the line)."""

    lines: list[str]
    offsets: list[list[tuple[int, int]]]  # per line, each token's (start, end) in the line

    @classmethod
    def build(cls, tokenizer, lines: Sequence[str]) -> HistoryLayout:  # noqa: ANN001 - a HF fast tokenizer
        offsets = []
        for line in lines:
            encoded = tokenizer(line, add_special_tokens=False, return_offsets_mapping=True)
            offsets.append([(int(s), int(e)) for s, e in encoded["offset_mapping"]])
        return cls(list(lines), offsets)

    @classmethod
    def for_example(cls, tokenizer, catalog: ItemCatalog, example: RerankExample) -> HistoryLayout:  # noqa: ANN001
        return cls.build(tokenizer, [item_line(item) for item in catalog.prompt_items(example.history)])

    @property
    def item_tokens(self) -> list[int]:
        return [len(o) for o in self.offsets]

    @property
    def total_tokens(self) -> int:
        return sum(self.item_tokens)

    @property
    def token_lines(self) -> np.ndarray:
        """For each history token (in order, across lines), the line it belongs to."""
        return np.repeat(np.arange(len(self.lines)), self.item_tokens)

    def units(self, granularity: Granularity) -> int:
        return len(self.lines) if granularity == "items" else self.total_tokens

    def budget_tokens(self, budget: Budget) -> int:
        return int(np.floor(budget.share * self.total_tokens + 1e-9))


def choose_spans(layout: HistoryLayout, preferred: Sequence[int], budget: Budget, granularity: Granularity,
                 window: int = 6) -> list[Span]:
    """Spans from units in order of preference (highest weight first), kept while the budget allows.

    ``items``: each unit is an item line, emphasised whole. ``tokens``: each unit is a history token (its
    index across all lines) and becomes the +-``window`` tokens around it within its own line, widened to
    whole words (a SID stays whole); a window overlapping or touching a kept span is skipped. A span that
    would pass the token budget is skipped and the next one tried, up to ``budget.max_spans``."""
    return sorted(accepted_spans(layout, preferred, budget, granularity, window)[0], key=lambda s: (s.item, s.start))


def accepted_spans(layout: HistoryLayout, preferred: Sequence[int], budget: Budget, granularity: Granularity,
                   window: int = 6) -> tuple[list[Span], list[int]]:
    """``choose_spans`` in the order they were accepted, with each one's position in ``preferred`` (a sampled
    ranking's log-probability is taken over the draws up to the last accepted one)."""
    allowed, used = layout.budget_tokens(budget), 0
    spans: list[Span] = []
    positions: list[int] = []
    lines = layout.token_lines
    first_token = np.concatenate([[0], np.cumsum(layout.item_tokens)])
    for position, unit in enumerate(preferred):
        if len(spans) >= budget.max_spans:
            break
        if granularity == "items":
            span = Span(int(unit), 0, len(layout.lines[unit]), layout.item_tokens[unit])
        else:
            line = int(lines[unit])
            span = _window(layout, line, int(unit - first_token[line]), window)
        if span.tokens == 0 or used + span.tokens > allowed:
            continue
        if any(s.item == span.item and s.start <= span.end and span.start <= s.end for s in spans):
            continue
        spans.append(span)
        positions.append(position)
        used += span.tokens
    return spans, positions


def _window(layout: HistoryLayout, line: int, center: int, window: int) -> Span:
    """Tokens center-window .. center+window of one line, widened to whole whitespace-separated words."""
    text, offsets = layout.lines[line], layout.offsets[line]
    first, last = max(0, center - window), min(len(offsets) - 1, center + window)
    start, end = offsets[first][0], offsets[last][1]
    while start < end and text[start].isspace():  # byte-level BPE tokens carry their leading space
        start += 1
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    covered = sum(1 for s, e in offsets if s < end and start < e and text[s:e].strip())
    return Span(line, start, end, covered)


def rendered_units(layout: HistoryLayout, spans: Sequence[Span], granularity: Granularity) -> np.ndarray:
    """0/1 per unit: what the solver was shown as emphasised (the action the policy gradient scores)."""
    if granularity == "items":
        out = np.zeros(len(layout.lines), dtype=np.float32)
        out[[s.item for s in spans]] = 1.0
        return out
    out = []
    for line, offsets in enumerate(layout.offsets):
        text = layout.lines[line]
        for s, e in offsets:
            out.append(float(any(sp.item == line and sp.start < e and s < sp.end and text[s:e].strip()
                                 for sp in spans)))
    return np.asarray(out, dtype=np.float32)


def kept_share(layout: HistoryLayout, spans: Sequence[Span]) -> float:
    """Share of the history's tokens inside emphasis spans."""
    total = layout.total_tokens
    return sum(s.tokens for s in spans) / total if total else 0.0


def emphasis_map(spans: Sequence[Span]) -> dict[int, list[tuple[int, int]]]:
    """Spans as ``gr2.rerank_format`` renders them: history position -> character ranges in its line."""
    out: dict[int, list[tuple[int, int]]] = {}
    for s in spans:
        out.setdefault(s.item, []).append((s.start, s.end))
    return out


def instruction_text(budget: Budget) -> str:
    """The prompt-only baseline: ask the solver to find the evidence itself, at the same budget."""
    return (f"Before ranking, pick the few history items (at most {budget.max_spans}, about "
            f"{budget.share:.0%} of the history) that best explain what the user wants next, and weigh them most.")


def render_messages(catalog: ItemCatalog, example: RerankExample, spans: Sequence[Span] = (),
                    instruction: str | None = None) -> list[dict[str, str]]:
    """The rerank prompt with ``spans`` tagged in the history (candidates are never tagged) and, for the
    prompt-only baseline, an instruction line before the closing request."""
    messages = catalog.messages(example, emphasis_map(spans))
    if instruction:
        user = messages[-1]["content"]
        head, sep, tail = user.rpartition(RANK_LINE)
        if not sep:
            raise ValueError(f"the rerank prompt no longer ends with {RANK_LINE!r}")
        messages[-1] = {**messages[-1], "content": f"{head}{instruction}\n{RANK_LINE}{tail}"}
    return messages
