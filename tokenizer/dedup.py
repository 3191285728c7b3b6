"""The de-duplication level: one extra code that makes every semantic ID unique.

Items that share a code tuple get 0, 1, 2, ... in item-index order, so the result is deterministic
and an item whose code is already unique gets 0 (TIGER's scheme).
"""

from __future__ import annotations

import numpy as np


def dedup_codes(codes: np.ndarray) -> np.ndarray:
    """The de-dup code of each item: its rank, by item index, within its collision group."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (items, levels), got shape {codes.shape}")
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")  # item-index order inside each group
    sorted_groups = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(order)) - run_start
    return rank


def add_dedup_level(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """``codes`` with the de-dup column appended, and that level's vocabulary size (largest group)."""
    extra = dedup_codes(codes)
    size = int(extra.max()) + 1 if len(extra) else 1
    return np.concatenate([np.asarray(codes, dtype=np.int64), extra[:, None]], axis=1), size
