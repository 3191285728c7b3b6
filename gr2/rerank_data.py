"""Rerank examples: a user's recent history and the pre-ranker's top-K, as items and as prompts.

Candidates come from the files ``gr2 rank candidates`` wrote (read through ``data.candidates``);
items are shown by SID + title. An example whose target is not among the candidates is kept for
end-to-end evaluation but cannot teach or reward a ranking (``target_index is None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from data.schema import PreparedDataset
from gr2.rerank_format import Emphasis, PromptItem, answer_keys, build_messages
from tokenizer.sid import SemanticIDs


@dataclass
class RerankExample:
    user: int
    history: list[int]  # item indices, oldest first (the most recent ``max_history``)
    candidates: list[int]  # item indices in pre-rank order
    target: int
    split: str = ""

    @property
    def target_index(self) -> int | None:
        """0-based pre-rank position of the target, or None when it is not a candidate."""
        return self.candidates.index(self.target) if self.target in self.candidates else None


def examples_from_candidates(ds: PreparedDataset, candidates: pd.DataFrame, split: str, max_history: int = 10,
                             k: int | None = None) -> list[RerankExample]:
    """One example per candidate row; the history is the sequence before the target."""
    examples = []
    for row in candidates.itertuples(index=False):
        seq = ds.sequences[int(row.user)]
        history = seq[: int(row.history_len)][-max_history:].tolist()
        cands = [int(c) for c in row.candidates][:k]
        examples.append(RerankExample(int(row.user), history, cands, int(row.target), split))
    return examples


@dataclass
class ItemCatalog:
    """What a prompt shows of an item: its SID and its title."""

    sids: SemanticIDs
    titles: list[str]
    item_ids: list[str]  # the dataset's own ids, as API requests name items
    answer_format: str = "sid"  # how answers name candidates (``rerank_format.answer_keys``)
    evidence: Any = None  # notes on candidate lines, e.g. ``gr2.prompt_evidence.CooccurrenceEvidence``; None: none

    @classmethod
    def build(cls, ds: PreparedDataset, sids: SemanticIDs, max_title_chars: int | None = None,
              answer_format: str = "sid") -> ItemCatalog:
        """``max_title_chars`` cuts titles (after sanitising): shorter prompts for a model that pays per token."""
        if len(sids) != ds.num_items:
            raise ValueError(f"semantic IDs cover {len(sids)} items, the dataset has {ds.num_items}")
        from gr2.rerank_format import sanitize_item_text

        titles = ds.items["title"].tolist()
        if max_title_chars is not None:
            titles = [sanitize_item_text(t, max_chars=max_title_chars) for t in titles]
        answer_keys([], answer_format)  # checks the format
        return cls(sids, titles, ds.items["item_id"].astype(str).tolist(), answer_format)

    def prompt_items(self, items: list[int]) -> list[PromptItem]:
        return [PromptItem(self.sids.sid(i), self.titles[i]) for i in items]

    def messages(self, example: RerankExample, emphasized_history: Emphasis = ()) -> list[dict[str, str]]:
        return build_messages(self.prompt_items(example.history), self.candidate_items(example),
                              emphasized_history, self.answer_format)

    def candidate_items(self, example: RerankExample) -> list[PromptItem]:
        """The candidates as the prompt shows them, with their evidence notes when the catalogue has evidence."""
        items = self.prompt_items(example.candidates)
        if self.evidence is None:
            return items
        return self.evidence.annotate(items, self.evidence.strengths(example))

    def candidate_sids(self, example: RerankExample) -> list[str]:
        return self.sids.sids(example.candidates)

    def answer_keys(self, example: RerankExample) -> list[str]:
        """How an answer names the example's candidates (SIDs or list numbers), in pre-rank order."""
        return answer_keys(self.candidate_sids(example), self.answer_format)
