"""Semantic-ID prefix n-grams as hashed feature ids for the rankers.

Every prefix of an item's code (a, ab, abc, ...) becomes one feature id, so items that share a
coarse code share a feature and the ranker can generalise across them (TIGER / "SID n-gram"
features). Ids are hashed into ``num_buckets`` with a fixed 64-bit mix, stable across runs and
machines; id 0 is never produced, so rankers can use it for padding.
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash (uint64 arithmetic wraps)."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


def prefix_ngram_ids(codes: np.ndarray, num_buckets: int = 1 << 20, salt: int = 0) -> np.ndarray:
    """(items, levels) codes -> (items, levels) ids in ``[1, num_buckets)``; column l hashes prefix 0..l.

    The prefix length is part of the hash, so prefix (3,) and prefix (3, 0) never share an id by
    construction; distinct prefixes collide only by hashing (about n^2 / 2B pairs for n prefixes).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be a 2-D integer array, got {codes.dtype} {codes.shape}")
    if (codes < 0).any():
        raise ValueError("codes must be non-negative")
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be at least 2, got {num_buckets}")
    with np.errstate(over="ignore"):
        h = np.full(len(codes), _mix(np.uint64(salt) + _GOLDEN), dtype=np.uint64)
        out = np.empty(codes.shape, dtype=np.int64)
        for level in range(codes.shape[1]):
            h = _mix(h ^ (codes[:, level].astype(np.uint64) + _GOLDEN * np.uint64(level + 1)))
            out[:, level] = (h % np.uint64(num_buckets - 1)).astype(np.int64) + 1
    return out
