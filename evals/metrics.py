"""Ranking metrics for single-target (leave-one-out) evaluation, vectorised over users.

Everything is computed from the 1-based rank of each user's target, so full-ranking evaluation (score every
item) and reranking evaluation (a permutation of K candidates) share one implementation:
``ranks_from_scores`` turns a score matrix into ranks, the ``*_at_k`` functions turn ranks into numbers.
A rank of ``0`` (or anything below 1) means "target not ranked at all" (e.g. not among the candidates) and
counts as a miss everywhere.

Ties: an item with the same score as the target is ranked above it when its index is lower, i.e. ranks are
the positions in a stable descending sort by score. That is the order a top-K list written by the same code
has, so hit rate at K equals the share of users whose target is in their top-K list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def ranks_from_scores(
    scores: np.ndarray,
    targets: np.ndarray,
    exclude: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """1-based rank of ``targets[u]`` among the scores of row ``u``; ``exclude[u]`` items are not ranked.

    ``scores``: (users, items) float array. ``exclude``: per row, item indices removed from the ranking
    (the user's earlier items); the target itself is never excluded even if listed. ``scores`` is not modified.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or len(targets) != scores.shape[0]:
        raise ValueError(f"scores must be (users, items) with one target per row; got {scores.shape} "
                         f"and {len(targets)} targets")
    if len(targets) and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError(f"target index out of range [0, {scores.shape[1]})")
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    item_index = np.arange(scores.shape[1])[None, :]
    above = (scores > target_scores) | ((scores == target_scores) & (item_index < targets[:, None]))
    if exclude is not None:
        if len(exclude) != len(targets):
            raise ValueError(f"exclude has {len(exclude)} rows, expected {len(targets)}")
        ex_rows, ex_items = _flatten(exclude)
        keep = ex_items != targets[ex_rows]
        above[ex_rows[keep], ex_items[keep]] = False
    return above.sum(axis=1).astype(np.int64) + 1


def ranks_in_lists(ranked: Sequence[Sequence[int]] | np.ndarray, targets: Iterable[int]) -> np.ndarray:
    """1-based position of each target in its ranked list (e.g. a reranker's permutation); 0 if absent."""
    out = []
    for items, target in zip(ranked, targets, strict=True):
        hits = np.flatnonzero(np.asarray(items) == target)
        out.append(int(hits[0]) + 1 if len(hits) else 0)
    return np.asarray(out, dtype=np.int64)


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of users whose target is in the top k (HR@k; with one target, Recall@k is the same)."""
    ranks = _check(ranks, k)
    return float(np.mean((ranks >= 1) & (ranks <= k))) if len(ranks) else 0.0


recall_at_k = hit_rate_at_k


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each user's NDCG@k with one relevant item: 1 / log2(rank + 1) if rank <= k else 0 (ideal DCG is 1)."""
    ranks = _check(ranks, k)
    hit = (ranks >= 1) & (ranks <= k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k averaged over users (see ``ndcg_gains``)."""
    gains = ndcg_gains(ranks, k)
    return float(gains.mean()) if len(gains) else 0.0


def relative_gain(base: np.ndarray, system: np.ndarray, confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float, float] | None:
    """``mean(system) / mean(base) - 1`` with a paired bootstrap confidence interval (low, high).

    ``base`` and ``system`` are per-user values of the same users (e.g. ``ndcg_gains`` of the pre-rank and of
    a reranked order); users are resampled together, so the interval reflects how much the gain depends on
    which users were drawn. None when the base mean is 0 (no relative gain is defined)."""
    from scipy.stats import bootstrap

    base, system = np.asarray(base, dtype=float), np.asarray(system, dtype=float)
    if base.shape != system.shape:
        raise ValueError(f"paired values differ in shape: {base.shape} vs {system.shape}")
    if not len(base) or base.mean() == 0:
        return None
    point = float(system.mean() / base.mean() - 1.0)
    if len(base) < 2 or np.array_equal(base, system):
        return point, point, point

    def ratio(b: np.ndarray, s: np.ndarray, axis: int = -1) -> np.ndarray:
        return s.mean(axis=axis) / b.mean(axis=axis) - 1.0

    # with a handful of users a resample can draw base mean 0: its ratio is inf and sits in the upper tail
    with np.errstate(divide="ignore", invalid="ignore"):
        result = bootstrap((base, system), ratio, paired=True, vectorized=True, confidence_level=confidence,
                           n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def mrr(ranks: np.ndarray, k: int | None = None) -> float:
    """Mean reciprocal rank, optionally cut at k (targets ranked below k count 0)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if not len(ranks):
        return 0.0
    ok = ranks >= 1 if k is None else (ranks >= 1) & (ranks <= k)
    return float(np.where(ok, 1.0 / np.maximum(ranks, 1), 0.0).mean())


def summarize(ranks: np.ndarray, ks: Sequence[int] = (10, 50), ndcg_ks: Sequence[int] = (10,)) -> dict[str, float]:
    """The standard block of numbers: ``hr@k`` for each ks, ``ndcg@k`` for each ndcg_ks, ``mrr``, ``users``."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at_k(ranks, k)
    for k in ndcg_ks:
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    out["mrr"] = mrr(ranks)
    out["users"] = int(len(ranks))
    return out


def _check(ranks: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.asarray(ranks, dtype=np.int64)


def _flatten(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    row_index = np.repeat(np.arange(len(rows)), lengths)
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if lengths.sum() else \
        np.zeros(0, dtype=np.int64)
    return row_index, items
