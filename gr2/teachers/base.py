"""The teacher interface: one reply (answer text + provenance) per rerank example.

Every teacher returns the text of an assistant turn, so LLM teachers and the offline heuristic
go through the same parser and the same acceptance test in ``gr2.traces``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gr2.rerank_data import RerankExample
from gr2.rerank_format import THINK_CLOSE, THINK_OPEN, PromptItem


@dataclass
class TeacherReply:
    text: str  # <think>...</think>{"recommendations": [...]}
    provenance: dict = field(default_factory=dict)  # who answered and how (model, heuristic, sampling)
    evidence: list[int] = field(default_factory=list)  # history positions the reasoning cites


def targeted_messages(messages: list[dict[str, str]], target: PromptItem) -> list[dict[str, str]]:
    """Targeted mode for LLM teachers: the same prompt plus the truth, to be explained and ranked first.

    Only the teacher sees this; the trace stores the plain prompt, so SFT never trains on the hint.
    """
    hint = (f"\n\n(Teacher note: the user's actual next item was {target.sid} {target.title}. Reason from the "
            "history towards it without mentioning this note, and rank it first.)")
    return [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + hint}]


def join_reasoning(content: str | None, reasoning: str | None) -> str:
    """Servers with a reasoning parser return the thinking apart from the answer; put it back in tags."""
    content = content or ""
    if reasoning and THINK_OPEN not in content:
        return f"{THINK_OPEN}{reasoning.strip()}{THINK_CLOSE}\n{content.strip()}"
    return content


class Teacher(Protocol):
    name: str

    def reply(self, example: RerankExample, messages: list[dict[str, str]], reveal_target: bool,
              rng: np.random.Generator) -> TeacherReply:
        """Rank the example's candidates. ``reveal_target``: targeted mode, the teacher may use the truth."""
        ...
