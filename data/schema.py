"""The canonical prepared dataset: items with text, chronological per-user sequences, leave-one-out.

Every source format is converted to this one form by ``data.prepare``; everything downstream
(tokenizer, rankers, GR2 prompts) reads only this. Items and users get dense integer indices
(row order in the Parquet files); the original ids are kept as strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from data.errors import DataError

ITEM_TEXT_FIELDS = ("title", "categories", "brand", "description")
Split = Literal["train", "valid", "test"]


@dataclass
class RawDataset:
    """What a source loader returns: items keyed by original id, sequences of original ids.

    Sequences are already chronological (loaders sort by timestamp, stably, where they have one).
    """

    items: pd.DataFrame  # columns: item_id (str) + any of ITEM_TEXT_FIELDS
    sequences: dict[str, list[str]]  # user_id -> item ids, oldest first
    timestamps: dict[str, list[int]] | None = None  # user_id -> unix seconds, parallel to sequences
    input_files: list[Path] = field(default_factory=list)
    source_format: str = ""


@dataclass
class EvalExamples:
    """Leave-one-out evaluation rows: each user's history and the single held-out target."""

    users: np.ndarray  # user indices
    histories: list[np.ndarray]  # item indices, oldest first
    targets: np.ndarray  # item indices

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class PreparedDataset:
    """A dataset in canonical form, as stored under ``$GR2_HOME/datasets/NAME``."""

    name: str
    items: pd.DataFrame  # row i = item index i; item_id, title, categories, brand, description
    user_ids: list[str]
    sequences: list[np.ndarray]  # per user: item indices, oldest first
    timestamps: list[np.ndarray] | None = None
    path: Path | None = None

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def item_text(self, index: int, fields: tuple[str, ...] = ITEM_TEXT_FIELDS) -> str:
        """The item's text fields joined into one line (title first), for encoders and prompts."""
        row = self.items.iloc[index]
        parts = [str(row[f]) for f in fields if f in row and isinstance(row[f], str) and row[f]]
        return " | ".join(parts)

    def item_texts(self, fields: tuple[str, ...] = ITEM_TEXT_FIELDS) -> list[str]:
        cols = [f for f in fields if f in self.items.columns]
        values = self.items[cols].fillna("").astype(str).to_numpy()
        return [" | ".join(v for v in row if v) for row in values]

    # Leave-one-out: last item is test, second-to-last valid, the rest train (TIGER / SASRec / GR2).
    def train_sequences(self) -> list[np.ndarray]:
        """Each user's sequence without the valid and test targets (users with < 3 items keep all)."""
        return [s[:-2] if len(s) >= 3 else s for s in self.sequences]

    def eval_examples(self, split: Literal["valid", "test"]) -> EvalExamples:
        """Users with at least 3 items: valid predicts item -2 from the items before it; test item -1."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        cut = 2 if split == "valid" else 1
        users, histories, targets = [], [], []
        for u, seq in enumerate(self.sequences):
            if len(seq) < 3:
                continue
            users.append(u)
            histories.append(seq[: len(seq) - cut])
            targets.append(seq[len(seq) - cut])
        return EvalExamples(np.asarray(users, dtype=np.int64), histories, np.asarray(targets, dtype=np.int64))

    def validate(self) -> None:
        if self.num_items == 0:
            raise DataError("dataset has no items", self.path)
        if self.num_users == 0 or self.num_interactions == 0:
            raise DataError("dataset has no interactions", self.path)
        hi = max(int(s.max()) for s in self.sequences if len(s))
        if hi >= self.num_items:
            raise DataError(f"sequence refers to item index {hi} but only {self.num_items} items exist", self.path)
