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
targets (``summary.json`` says how). This module reads and validates, and owns the cross-fitting rule (the
fold of each user, what a fold's model may learn from) so that gr2/ can hold out the same data as the
candidates did; it imports nothing from rankers/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError

SPLITS = ("train", "valid", "test")
COLUMNS = ("user", "user_id", "target", "history_len", "cut", "candidates", "scores", "target_rank")
CUTS = {"train": 3, "valid": 2, "test": 1}
CROSSFIT_SEED = 1234  # the fold assignment of ``gr2 rank candidates``; anything cross-fitted later must reuse it


def fold_of_users(num_users: int, folds: int, seed: int = CROSSFIT_SEED) -> np.ndarray:
    """Each user's cross-fitting fold (a seeded permutation mod ``folds``, so fold sizes differ by at most 1).

    Lives in the data layer so that everything fitted on train data for train-split examples (the pre-ranker's
    candidates, the heuristic teacher's co-occurrence) holds out the same users."""
    return np.random.default_rng(seed).permutation(num_users) % folds


def fold_train_sequences(sequences: Sequence[np.ndarray], held_out: np.ndarray,
                         train_cuts: int) -> list[np.ndarray]:
    """What a fold's model may learn from: everyone's training sequence (``seq[:-2]``), except that the held-out
    users lose their last ``2 + train_cuts`` items (valid, test and every train-split target), keeping one item."""
    drop = 2 + train_cuts
    return [s[:max(1, len(s) - drop)] if held_out[u] else s[:-2] if len(s) >= 3 else s
            for u, s in enumerate(sequences)]


def load_crossfit_settings(run_dir: str | Path) -> tuple[int, int]:
    """(folds, train_cuts) the run's candidate files were made with (their manifest; summary for train_cuts)."""
    manifest = candidates_dir(run_dir) / "manifest.json"
    if not manifest.is_file():
        raise DataError("no candidate manifest here; run `gr2 rank candidates --run DIR` first", manifest)
    config = json.loads(manifest.read_text()).get("config", {})
    if "folds" not in config:
        raise DataError("the candidate manifest does not say how many folds were used", manifest)
    return int(config["folds"]), int(config.get("train_cuts", load_candidate_summary(run_dir).get("train_cuts", 1)))


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
