"""The teacher interface: one reply (answer text + provenance) per rerank example.

Every teacher returns the text of an assistant turn, so LLM teachers and the offline heuristic
go through the same parser and the same acceptance test in ``gr2.traces``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gr2.rerank_data import RerankExample


@dataclass
class TeacherReply:
    text: str  # <think>...</think>{"recommendations": [...]}
    provenance: dict = field(default_factory=dict)  # who answered and how (model, heuristic, sampling)
    evidence: list[int] = field(default_factory=list)  # history positions the reasoning cites


class Teacher(Protocol):
    name: str

    def reply(self, example: RerankExample, messages: list[dict[str, str]], reveal_target: bool,
              rng: np.random.Generator) -> TeacherReply:
        """Rank the example's candidates. ``reveal_target``: targeted mode, the teacher may use the truth."""
        ...
