"""Ways to choose what to emphasise, all at the same budget: the actor and its baselines.

- ``none``: the plain prompt (what every row is compared against).
- ``random``: random units (items, or token windows at token granularity), seeded per example.
- ``recency``: the most recent items (the pre-ranker's own prior: recent items predict the next).
- ``similarity``: the history items whose content embeddings are closest to the candidates (the
  largest cosine similarity to any candidate), the obvious unsupervised evidence finder.
- ``cited``: the history items the leak-free heuristic teacher cites for its top picks (exactly what the
  SFT prompts wrapped in tags), then the others by their strongest co-occurrence with a candidate: the
  tags the solver was taught to read, so the probe of whether informative emphasis moves it at all.
- ``prompt``: no tags; an instruction asks the solver to find and weigh the evidence itself.
- ``hilight``: the trained actor (``EmphasisActor.apply``).

A method maps examples and their history layouts to an ``Emphasis`` each; ``choose_spans`` enforces
the budget for every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gr2.rerank_data import ItemCatalog, RerankExample
from hilight.config import METHODS
from hilight.spans import Budget, Granularity, HistoryLayout, Span, choose_spans, instruction_text


@dataclass
class Emphasis:
    spans: list[Span] = field(default_factory=list)
    instruction: str | None = None  # the prompt-only baseline's extra line


class Method:
    name = "none"

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        return [Emphasis() for _ in examples]


class RandomSpans(Method):
    name = "random"

    def __init__(self, budget: Budget, granularity: Granularity = "items", window: int = 6, seed: int = 0):
        self.budget, self.granularity, self.window, self.seed = budget, granularity, window, seed

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        out = []
        for ex, layout in zip(examples, layouts, strict=True):
            # seeded by the example, so a row does not depend on which other examples were evaluated with it
            rng = np.random.default_rng([self.seed, ex.user, ex.target, len(ex.history)])
            order = rng.permutation(layout.units(self.granularity)).tolist()
            out.append(Emphasis(choose_spans(layout, order, self.budget, self.granularity, self.window)))
        return out


class Recency(Method):
    name = "recency"

    def __init__(self, budget: Budget):
        self.budget = budget

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        return [Emphasis(choose_spans(layout, list(reversed(range(len(layout.lines)))), self.budget, "items"))
                for layout in layouts]


class Similarity(Method):
    name = "similarity"

    def __init__(self, budget: Budget, embeddings: np.ndarray):
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.budget, self.vectors = budget, embeddings / np.maximum(norms, 1e-12)

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        out = []
        for ex, layout in zip(examples, layouts, strict=True):
            scores = (self.vectors[ex.history] @ self.vectors[ex.candidates].T).max(axis=1)
            order = np.argsort(-scores, kind="stable").tolist()
            out.append(Emphasis(choose_spans(layout, order, self.budget, "items")))
        return out


class TeacherCited(Method):
    name = "cited"

    def __init__(self, budget: Budget, teacher):  # noqa: ANN001 - a gr2.teachers.HeuristicTeacher
        self.budget, self.teacher = budget, teacher

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        out = []
        for ex, layout in zip(examples, layouts, strict=True):
            # the teacher's own reply (greedy at its recipe temperature; never shown the target) and its evidence
            reply = self.teacher.reply(ex, [], reveal_target=False, rng=np.random.default_rng(0))
            _, cooc = self.teacher.evidence_matrix(ex)
            strength = cooc.max(axis=1) if cooc.size else np.zeros(len(ex.history))
            rest = [int(i) for i in np.argsort(-strength, kind="stable") if int(i) not in reply.evidence]
            out.append(Emphasis(choose_spans(layout, [*reply.evidence, *rest], self.budget, "items")))
        return out


class PromptOnly(Method):
    name = "prompt"

    def __init__(self, budget: Budget):
        self.instruction = instruction_text(budget)

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        return [Emphasis(instruction=self.instruction) for _ in examples]


class ActorMethod(Method):
    name = "hilight"

    def __init__(self, actor, catalog: ItemCatalog, budget: Budget, decode: str = "top"):  # noqa: ANN001
        self.actor, self.catalog, self.budget, self.decode = actor, catalog, budget, decode

    def __call__(self, examples: Sequence[RerankExample], layouts: Sequence[HistoryLayout]) -> list[Emphasis]:
        inputs = [self.actor.prepare_example(self.catalog, ex) for ex in examples]
        return [Emphasis(spans) for spans in self.actor.apply(inputs, self.budget, self.decode)]


def build_methods(names: Sequence[str], budget: Budget, granularity: Granularity = "items", window: int = 6,
                  seed: int = 0, embeddings: np.ndarray | None = None, actor=None,  # noqa: ANN001
                  catalog: ItemCatalog | None = None, decode: str = "top",
                  teacher=None) -> dict[str, Method]:  # noqa: ANN001
    """The named methods, in order; ``similarity`` needs item ``embeddings``, ``cited`` the heuristic
    ``teacher``, ``hilight`` an ``actor``."""
    out: dict[str, Method] = {}
    for name in names:
        if name == "none":
            out[name] = Method()
        elif name == "random":
            out[name] = RandomSpans(budget, granularity, window, seed)
        elif name == "recency":
            out[name] = Recency(budget)
        elif name == "similarity":
            if embeddings is None:
                raise ValueError("the similarity baseline needs item embeddings (gr2 data embed)")
            out[name] = Similarity(budget, embeddings)
        elif name == "cited":
            if teacher is None:
                raise ValueError("the cited baseline needs the run's heuristic teacher")
            out[name] = TeacherCited(budget, teacher)
        elif name == "prompt":
            out[name] = PromptOnly(budget)
        elif name == "hilight":
            if actor is None or catalog is None:
                raise ValueError("the hilight method needs a trained actor (gr2 hilight train)")
            out[name] = ActorMethod(actor, catalog, budget, decode)
        else:
            raise ValueError(f"unknown emphasis method {name!r}; available: {list(METHODS)}")
    return out
