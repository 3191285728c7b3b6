"""How good a set of semantic IDs is: uniqueness, codebook utilisation, semantic cohesion."""

from __future__ import annotations

import numpy as np


def uniqueness(codes: np.ndarray) -> float:
    """Distinct code tuples / items (1.0 = every item has its own ID)."""
    codes = np.asarray(codes)
    return float(len(np.unique(codes, axis=0)) / len(codes)) if len(codes) else 1.0


def collision_stats(codes: np.ndarray) -> dict[str, int]:
    """Largest group of items sharing one ID, and how many items share their ID with another."""
    _, counts = np.unique(np.asarray(codes), axis=0, return_counts=True)
    return {"largest_collision_group": int(counts.max()) if len(counts) else 0,
            "items_in_collisions": int(counts[counts > 1].sum())}


def utilization(codes: np.ndarray, codebook_size: int) -> list[float]:
    """Per level: the share of the codebook that at least one item uses."""
    codes = np.asarray(codes)
    return [float(len(np.unique(codes[:, level])) / codebook_size) for level in range(codes.shape[1])]


def first_level_cohesion(x: np.ndarray, codes: np.ndarray) -> dict[str, float]:
    """Mean cosine of item pairs sharing a first-level code vs of all item pairs (exact, no sampling).

    For unit vectors the sum of pairwise cosines in a group is (|sum|^2 - n) / 2, so both means
    come from per-group sums. A semantic first level has the first figure well above the second.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    first = np.asarray(codes)[:, 0]
    n = len(x)
    sums = np.zeros((int(first.max()) + 1, x.shape[1]))
    np.add.at(sums, first, x)
    sizes = np.bincount(first, minlength=len(sums)).astype(np.float64)
    same_pairs = float((sizes * (sizes - 1)).sum())
    same = float(((sums**2).sum(axis=1) - sizes).sum() / same_pairs) if same_pairs else float("nan")
    total = x.sum(axis=0)
    random_pairs = float((total @ total - n) / (n * (n - 1))) if n > 1 else float("nan")
    return {"same_first_code_cosine": same, "random_pair_cosine": random_pairs}
