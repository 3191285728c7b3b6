"""Item-item co-occurrence from training sequences: sparse, order-aware, popularity-damped.

``C[i, j]`` sums ``1 / gap`` over pairs where j follows i within ``window`` steps and
``backward_weight / gap`` where j precedes i; column j is divided by ``count_j ** popularity_alpha``
so blockbusters do not co-occur with everything. Shared by the co-occurrence retriever and the
heuristic teacher, so both read the same signal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def item_counts(sequences: Sequence[np.ndarray], num_items: int) -> np.ndarray:
    nonempty = [s for s in sequences if len(s)]
    if not nonempty:
        return np.zeros(num_items)
    return np.bincount(np.concatenate(nonempty), minlength=num_items).astype(np.float64)


def cooccurrence_matrix(sequences: Sequence[np.ndarray], num_items: int, window: int = 5,
                        backward_weight: float = 0.5, popularity_alpha: float = 0.5) -> sp.csr_matrix:
    if window < 1:
        raise ValueError(f"co-occurrence window must be >= 1, got {window}")
    rows, cols, vals = [], [], []
    for gap in range(1, window + 1):
        pairs = [(s[:-gap], s[gap:]) for s in sequences if len(s) > gap]
        if not pairs:
            break
        a = np.concatenate([p[0] for p in pairs])
        b = np.concatenate([p[1] for p in pairs])
        rows += [a, b]
        cols += [b, a]
        vals += [np.full(len(a), 1.0 / gap), np.full(len(a), backward_weight / gap)]
    if not rows:
        return sp.csr_matrix((num_items, num_items), dtype=np.float32)
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    keep = r != c
    m = sp.coo_matrix((v[keep], (r[keep], c[keep])), shape=(num_items, num_items)).tocsr()
    m.sum_duplicates()
    m = m @ sp.diags(1.0 / np.maximum(item_counts(sequences, num_items), 1.0) ** popularity_alpha)
    return m.astype(np.float32).tocsr()
