"""Full-ranking evaluation and top-K lists, shared by every ranker.

Protocol (leave-one-out, as SASRec / RecBole): score every item, remove the user's earlier items (history)
from the ranking except the target itself, rank, and average the metrics over every eval user. Top-K lists
use the same exclusions and the same tie order as ``evals.metrics.ranks_from_scores`` (higher score first,
then lower item index), so a list's recall@K equals HR@K of the full-ranking evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from data.schema import EvalExamples
from evals.metrics import ranks_from_scores, summarize


class Scorer(Protocol):
    """Anything that scores every item for a batch of histories: ``(batch, num_items)`` float32."""

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray: ...


def iter_batches(n: int, batch_size: int) -> range:
    return range(0, n, batch_size)


def eval_ranks(scorer: Scorer, examples: EvalExamples, batch_size: int = 1024, progress: bool = False,
               desc: str = "eval") -> np.ndarray:
    """1-based rank of every eval user's target among all items not in their history."""
    ranks = np.empty(len(examples), dtype=np.int64)
    for lo in tqdm(iter_batches(len(examples), batch_size), desc=desc, disable=not progress, leave=False):
        hist = examples.histories[lo:lo + batch_size]
        scores = scorer.score(hist)
        ranks[lo:lo + batch_size] = ranks_from_scores(scores, examples.targets[lo:lo + batch_size], exclude=hist)
    return ranks


def evaluate(scorer: Scorer, examples: EvalExamples, batch_size: int = 1024, progress: bool = False,
             desc: str = "eval") -> dict[str, float]:
    """``hr@10``, ``hr@50``, ``ndcg@10``, ``mrr``, ``users`` under the full-ranking protocol."""
    return summarize(eval_ranks(scorer, examples, batch_size, progress, desc))


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best items (excluded ones removed) and their scores, best first.

    Ties are broken by lower item index, exactly as the ranks are, so ties at the K-th place are resolved
    the same way here and in the evaluation.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    n_rows, n_items = scores.shape
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be in [1, {n_items}], got {k}")
    if exclude is not None:
        lengths = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=n_rows)
        if lengths.sum():
            rows = np.repeat(np.arange(n_rows), lengths)
            scores[rows, np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude])] = -np.inf
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(scores >= kth[:, None])  # k or more per row (ties at the k-th value)
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.searchsorted(rows, np.arange(n_rows))
    take = (first[:, None] + np.arange(k)[None, :]).ravel()
    return cols[take].reshape(n_rows, k).astype(np.int64), vals[take].reshape(n_rows, k)
