"""Read the pre-ranker's candidate files (written by ``gr2 rank candidates``) for the reranking stages.

Layout: ``RUN_DIR/candidates/{train,valid,test}.parquet`` + ``RUN_DIR/candidates/summary.json``.
One row per user (train: one per user and cut), columns:

| column        | type          | meaning                                                                 |
| ------------- | ------------- | ----------------------------------------------------------------------- |
| `user`        | int64         | user index in the prepared dataset                                      |
| `user_id`     | string        | the original user id                                                    |
| `target`      | int64         | item index of the held-out next item                                    |
| `history_len` | int32         | items before the target: the history is ``sequence[:history_len]``      |
| `cut`         | int8          | items cut from the end of the sequence: >= 3 train, 2 valid, 1 test     |
| `candidates`  | list<int64>   | the top-K item indices in pre-rank order (best first), history excluded |
| `scores`      | list<float32> | the pre-ranker's score of each candidate, parallel to `candidates`      |
| `target_rank` | int64         | 1-based rank of the target in the pre-ranker's full ranking             |

``target_rank <= K`` means the target is a candidate; the share of such rows is the split's candidate recall,
the ceiling of any reranker. Train-split candidates come from cross-fitted models that never saw those
targets (``summary.json`` says how). This module only reads and validates; it imports nothing from rankers/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError

SPLITS = ("train", "valid", "test")
COLUMNS = ("user", "user_id", "target", "history_len", "cut", "candidates", "scores", "target_rank")
CUTS = {"train": 3, "valid": 2, "test": 1}


def candidates_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "candidates"


def load_candidate_summary(run_dir: str | Path) -> dict:
    """K, recall per split, how train candidates were made, the run they came from."""
    path = candidates_dir(run_dir) / "summary.json"
    if not path.is_file():
        raise DataError("no candidate files here; run `gr2 rank candidates --run DIR` first", path)
    return json.loads(path.read_text())


def load_candidates(run_dir: str | Path, split: str) -> pd.DataFrame:
    """One split's candidates as a DataFrame (schema above), validated; ``df.attrs["k"]`` is K."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; available: {list(SPLITS)}")
    path = candidates_dir(run_dir) / f"{split}.parquet"
    if not path.is_file():
        present = sorted(p.stem for p in candidates_dir(run_dir).glob("*.parquet"))
        raise DataError(f"no {split} candidates (present: {present}); run `gr2 rank candidates --run DIR`", path)
    df = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"candidate file lacks columns {missing}; expected {list(COLUMNS)}", path)
    lengths = df["candidates"].map(len).to_numpy()
    if len(df) and (lengths != lengths[0]).any():
        raise DataError("rows have different numbers of candidates", path)
    if (df["scores"].map(len).to_numpy() != lengths).any():
        raise DataError("scores and candidates differ in length", path)
    cuts = df["cut"].to_numpy()
    if len(df) and (cuts < CUTS[split] if split == "train" else cuts != CUTS[split]).any():
        raise DataError(f"{split} rows must have cut {'>=' if split == 'train' else '='} {CUTS[split]}", path)
    if len(df):
        cands = np.stack(df["candidates"].to_numpy())
        scores = np.stack(df["scores"].to_numpy())
        ordered = np.sort(cands, axis=1)
        dup = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if len(dup):
            raise DataError(f"row {int(dup[0])}: duplicate candidates", path)
        unordered = np.flatnonzero((np.diff(scores, axis=1) > 0).any(axis=1))
        if len(unordered):
            raise DataError(f"row {int(unordered[0])}: candidates are not in pre-rank (descending score) order", path)
    df.attrs["k"] = int(lengths[0]) if len(df) else 0
    df.attrs["split"] = split
    return df
