"""Collaborative evidence on the candidates' lines of a rerank prompt (``prompt_evidence: cooccurrence``).

What lets the heuristic teacher beat the pre-rank order on Games is co-occurrence: which candidates other
users picked next to this user's recent items (valid NDCG@5 +10.6% over pre-rank from co-occurrence alone,
+3.0% from title overlap alone). A small student cannot hold a 16,859-item co-occurrence table in its weights
(its stage-1 likelihood order trails SASRec's), and the first-slot distribution of an SFT student trained
without it ranks the candidates no better than the pre-rank order. So the prompt says it, as recommenders
that put collaborative signals into an LLM's prompt do: how strongly each candidate was picked with the
user's recent items (strong / some / weak), the measure the teacher itself ranks by (co-occurrence scaled by
the example's largest, discounted 0.8 per step back in the history). ``rerank_format`` shows the levels as one
line after the candidates, strongest first by the strength itself (``Picked with your recent items: "8" (strong),
"3" (some)``). The numbers are quoted as an answer writes them: the tiny tokenizer makes `` 8`` and ``8`` different
tokens, and the student copies tokens. A per-line note ``(picked with 10: strong)`` was not picked up by the tiny
student in 750 SFT steps (its first-slot order stayed at the pre-rank's level), nor, after 200 steps, a line of
unquoted numbers; copying quoted numbers from a nearby line is what it already does with the candidate list.

No leak: the evidence of a train example is counted on its cross-fitted fold (``CrossFitCooccurrence``, the
teacher's and the candidates' folds), so it never counts the example's own target; valid, test and served
requests read the matrix of all train sequences, which is what exists at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gr2.rerank_data import RerankExample
from gr2.rerank_format import PromptItem

# (threshold on the recency-discounted, example-scaled co-occurrence, word shown); below the last: no note
LEVELS = ((0.5, "strong"), (0.15, "some"), (1e-9, "weak"))


@dataclass
class CooccurrenceEvidence:
    """Evidence strengths for the candidates of a rerank example, and the prompt items that show them;
    ``cooccurrence`` has ``matrix(example) -> csr_matrix`` (a ``gr2.teachers.CrossFitCooccurrence``)."""

    cooccurrence: object
    recency: float = 0.8

    def strengths(self, example: RerankExample) -> np.ndarray:
        return self.strengths_from(self.cooccurrence.matrix(example), example.history, example.candidates)

    def strengths_for(self, history: Sequence[int], candidates: Sequence[int]) -> np.ndarray:
        return self.strengths(RerankExample(-1, list(history), list(candidates), -1, ""))

    def strengths_from(self, matrix: sp.csr_matrix, history: Sequence[int], candidates: Sequence[int]) -> np.ndarray:
        """Each candidate's strongest recency-discounted co-occurrence with a history item, scaled by the
        example's largest count (the heuristic teacher's co-occurrence term, computed the same way)."""
        if not len(history) or not len(candidates):
            return np.zeros(len(candidates))
        cooc = np.asarray(matrix[list(history)][:, list(candidates)].todense(), dtype=np.float64)
        if cooc.max() <= 0:
            return np.zeros(len(candidates))
        discount = self.recency ** np.arange(len(history))[::-1][:, None]  # the most recent item counts whole
        return (cooc / cooc.max() * discount).max(axis=0)

    def annotate(self, items: Sequence[PromptItem], strengths: np.ndarray) -> list[PromptItem]:
        """The candidates' prompt items with their level and strength (which orders the evidence line)."""
        return [PromptItem(i.sid, i.title, level(v), float(v)) for i, v in zip(items, strengths, strict=True)]


def level(strength: float) -> str:
    """The word a strength shows as; "" (no note) below the weakest level."""
    return next((word for threshold, word in LEVELS if strength >= threshold), "")
