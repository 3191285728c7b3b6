"""RQ-KMeans: faiss k-means on the residuals, one level at a time (OneRec / GRID baseline).

No training beyond k-means, so it is fast and a good baseline; its weakness is that identical or
near-identical embeddings always get identical codes (see the de-dup level and RQ-VAE's random
last level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import faiss
import numpy as np

from tokenizer.base import Quantizer, check_codes, check_embeddings


@dataclass
class RQKMeansConfig:
    levels: int = 3
    codebook_size: int = 256
    niter: int = 25  # faiss k-means iterations per level
    balanced: bool = False  # cap cluster sizes at ceil(N / K) (OneRec's balanced k-means)
    balance_iters: int = 5  # capacity-constrained assignment / centroid update rounds after k-means
    seed: int = 0


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centroid (exact L2, faiss flat index)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return idx[:, 0].astype(np.int64)


def balanced_assign(x: np.ndarray, centroids: np.ndarray, capacity: int) -> np.ndarray:
    """Each item to its nearest centroid that still has room; the most clear-cut items choose first."""
    d = (x**2).sum(1, keepdims=True) - 2 * x @ centroids.T + (centroids**2).sum(1)[None, :]
    prefs = np.argsort(d, axis=1, kind="stable")
    best = np.take_along_axis(d, prefs[:, :2], axis=1) if d.shape[1] > 1 else d
    margin = best[:, 1] - best[:, 0] if d.shape[1] > 1 else np.zeros(len(x))
    order = np.argsort(-margin, kind="stable")  # large margin = the item cares most about its choice
    load = np.zeros(len(centroids), dtype=np.int64)
    assign = np.empty(len(x), dtype=np.int64)
    for i in order.tolist():
        for c in prefs[i].tolist():
            if load[c] < capacity:
                assign[i] = c
                load[c] += 1
                break
    return assign


class RQKMeans(Quantizer):
    method = "rq-kmeans"
    config_class = RQKMeansConfig

    def __init__(self, config: RQKMeansConfig | None = None):
        super().__init__(config)
        self.centroids: np.ndarray | None = None  # (levels, K, D)

    def fit(self, x: np.ndarray) -> Self:
        x = self._check_fit_input(x)
        cfg = self.config
        residual = x.copy()
        centroids = np.empty((cfg.levels, cfg.codebook_size, x.shape[1]), dtype=np.float32)
        for level in range(cfg.levels):
            km = faiss.Kmeans(x.shape[1], cfg.codebook_size, niter=cfg.niter, seed=cfg.seed + level,
                              verbose=False, min_points_per_centroid=1, max_points_per_centroid=1 << 30)
            km.train(residual)
            c = km.centroids.astype(np.float32)
            if cfg.balanced:
                capacity = math.ceil(len(x) / cfg.codebook_size)
                for _ in range(cfg.balance_iters):
                    assign = balanced_assign(residual, c, capacity)
                    sums = np.zeros_like(c)
                    np.add.at(sums, assign, residual)
                    counts = np.bincount(assign, minlength=len(c))[:, None]
                    c = np.where(counts > 0, sums / np.maximum(counts, 1), c).astype(np.float32)
                assign = balanced_assign(residual, c, capacity)
            else:
                assign = nearest(residual, c)
            centroids[level] = c
            residual -= c[assign]
        self.centroids = centroids
        self.dim = x.shape[1]
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Nearest centroid per level; with ``balanced`` the batch is assigned under the same size cap."""
        x = check_embeddings(x, self._require_fitted())
        residual = x.copy()
        codes = np.empty((len(x), self.levels), dtype=np.int64)
        capacity = math.ceil(len(x) / self.codebook_size)
        for level, c in enumerate(self.centroids):
            codes[:, level] = balanced_assign(residual, c, capacity) if self.config.balanced else nearest(residual, c)
            residual -= c[codes[:, level]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        self._require_fitted()
        codes = check_codes(codes, self.levels, self.codebook_size)
        return sum(self.centroids[level][codes[:, level]] for level in range(self.levels)).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        c = np.asarray(arrays["centroids"], dtype=np.float32)
        if c.shape != (self.levels, self.codebook_size, self.dim):
            raise ValueError(f"centroids of shape {c.shape}, expected {(self.levels, self.codebook_size, self.dim)}")
        if not np.isfinite(c).all():
            raise ValueError("centroids contain NaN/inf")
        self.centroids = c
