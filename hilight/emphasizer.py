"""A trained actor as a serving component: history and candidates in, emphasis spans out.

``/v1/rerank`` with ``"emphasis": "hilight"`` calls it on the items the model will see (after the
history is cut to the trained length and item text is stripped of markup), then renders the spans
into the prompt through the same ``gr2.rerank_format`` code training used. One request at a time goes
through the actor (a lock): it is small next to the solver, and torch modules are not re-entrant.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from data.configs import build_config
from gr2.rerank_format import PromptItem
from hilight.actor import EmphasisActor
from hilight.spans import Budget, Span


class Emphasizer:
    def __init__(self, actor: EmphasisActor, budget: Budget, decode: str = "top"):
        self.actor, self.budget, self.decode = actor.eval(), budget, decode
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, actor_dir: str | Path) -> Emphasizer:
        """An actor saved by ``gr2 hilight train`` (``RUN/hilight/actor``), with the budget it trained under."""
        meta = json.loads((Path(actor_dir) / "actor_config.json").read_text())
        budget = build_config(Budget, meta.get("budget", {}), "budget")
        return cls(EmphasisActor.load(actor_dir), budget, meta.get("decode", "top"))

    def __call__(self, history: Sequence[PromptItem], candidates: Sequence[PromptItem]) -> list[Span]:
        if not history:
            return []
        with self._lock:
            return self.actor.apply([self.actor.prepare(history, candidates)], self.budget, self.decode)[0]
