"""Cheap retrievers: popularity, item-item co-occurrence (sparse, recency-weighted), content ANN (faiss).

Each one is fitted on training sequences only and scores every item for a batch of histories, so the
same full-ranking evaluation and top-K code serve all of them (``rankers.evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from data.cooccurrence import cooccurrence_matrix, item_counts
from rankers.errors import ConfigError


@dataclass
class PopularityConfig:
    recency_half_life: float = 0.0  # 0 = plain counts; > 0 = weight a user's k-th latest item by 0.5 ** (k / half_life)


class PopularityRanker:
    """Most interacted-with items first, the same list for everyone (the floor every model must beat)."""

    def __init__(self, config: PopularityConfig | None = None):
        self.config = config or PopularityConfig()
        self.counts: np.ndarray | None = None

    def fit(self, sequences: Sequence[np.ndarray], num_items: int) -> PopularityRanker:
        counts = np.zeros(num_items, dtype=np.float64)
        for seq in sequences:
            if self.config.recency_half_life > 0:
                age = np.arange(len(seq))[::-1]
                np.add.at(counts, seq, 0.5 ** (age / self.config.recency_half_life))
            else:
                np.add.at(counts, seq, 1.0)
        self.counts = counts.astype(np.float32)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()


@dataclass
class CooccurrenceConfig:
    window: int = 5  # pairs of items at most this many steps apart co-occur
    backward_weight: float = 0.5  # weight of "j came before i" relative to "j came after i"
    history_decay: float = 0.7  # a history item k steps before the latest counts decay ** k
    max_history: int = 20  # only the most recent items of a history vote
    popularity_alpha: float = 0.5  # divide column j by count_j ** alpha (damps blockbusters)


class CooccurrenceRanker:
    """Item-to-item: ``score(j) = sum_h decay^age(h) * C[h, j]`` over the user's recent items h.

    ``C[i, j]`` sums ``1 / gap`` over training pairs where j follows i within ``window`` steps (and
    ``backward_weight / gap`` where j precedes i), a sparse, order-aware, recency-weighted co-occurrence.
    """

    def __init__(self, config: CooccurrenceConfig | None = None):
        self.config = config or CooccurrenceConfig()
        self.matrix: sp.csr_matrix | None = None
        self.fallback: np.ndarray | None = None

    def fit(self, sequences: Sequence[np.ndarray], num_items: int) -> CooccurrenceRanker:
        cfg = self.config
        try:
            self.matrix = cooccurrence_matrix(sequences, num_items, window=cfg.window,
                                              backward_weight=cfg.backward_weight,
                                              popularity_alpha=cfg.popularity_alpha)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        counts = item_counts(sequences, num_items)
        # Items nobody co-occurs with are ordered by popularity, a millionth of a co-occurrence point apart.
        self.fallback = (1e-6 * counts / max(counts.max(), 1.0)).astype(np.float32)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        cfg = self.config
        rows, cols, vals = [], [], []
        for r, hist in enumerate(histories):
            recent = np.asarray(hist[-cfg.max_history:], dtype=np.int64)
            rows.append(np.full(len(recent), r))
            cols.append(recent)
            vals.append(cfg.history_decay ** np.arange(len(recent))[::-1])
        n = self.matrix.shape[0]
        weights = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(len(histories), n), dtype=np.float32)
        return np.asarray((weights @ self.matrix).todense(), dtype=np.float32) + self.fallback


@dataclass
class ContentConfig:
    history_decay: float = 0.8  # user vector = decay-weighted mean of recent item embeddings
    max_history: int = 20
    index: str = "flat"  # "flat" (exact inner product) or "hnsw" (approximate, for large catalogues)
    hnsw_m: int = 32


class ContentRanker:
    """Content ANN: a user is the recency-weighted mean of their items' text embeddings; faiss finds neighbours.

    Scores come from a faiss index search (``index.search``), so full ranking with a flat index is exact
    inner product and an HNSW index gives the approximate lists a large catalogue would use.
    """

    def __init__(self, embeddings: np.ndarray, config: ContentConfig | None = None):
        import faiss

        self.config = config or ContentConfig()
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        dim = self.embeddings.shape[1]
        if self.config.index == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif self.config.index == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            raise ConfigError(f"unknown faiss index {self.config.index!r}; available: ['flat', 'hnsw']")
        self.index.add(self.embeddings)

    def fit(self, sequences: Sequence[np.ndarray], num_items: int) -> ContentRanker:
        if num_items != len(self.embeddings):
            raise ConfigError(f"{len(self.embeddings)} embeddings for {num_items} items")
        return self

    def user_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        cfg = self.config
        out = np.zeros((len(histories), self.embeddings.shape[1]), dtype=np.float32)
        for r, hist in enumerate(histories):
            recent = np.asarray(hist[-cfg.max_history:], dtype=np.int64)
            if len(recent):
                w = cfg.history_decay ** np.arange(len(recent))[::-1]
                out[r] = (w[:, None] * self.embeddings[recent]).sum(0) / w.sum()
        return out

    def search(self, histories: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest items per history (faiss order), without exclusions: (indices, scores)."""
        scores, idx = self.index.search(self.user_vectors(histories), k)
        return idx, scores

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        n = len(self.embeddings)
        idx, sims = self.search(histories, n)
        out = np.full((len(histories), n), -np.inf, dtype=np.float32)
        ok = idx >= 0  # HNSW may return fewer than n neighbours (-1 padded)
        rows = np.broadcast_to(np.arange(len(histories))[:, None], idx.shape)
        out[rows[ok], idx[ok]] = sims[ok]
        return out
