"""A tiny synthetic prepared dataset with learnable structure, for fast SASRec and candidate tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def synthetic(gr2_home):
    """120 users over 40 items; each user walks item i -> i+1 (mod 40) from a random start, with some noise.

    A sequential model can learn "next = last + 1" in an epoch or two; popularity cannot.
    """
    from data.artifacts import build_manifest, datasets_dir
    from data.prepare import compute_stats, load_prepared, save_prepared, to_prepared
    from data.schema import RawDataset

    rng = np.random.default_rng(0)
    n_items = 40
    sequences = {}
    for u in range(120):
        start, length = rng.integers(n_items), rng.integers(6, 15)
        seq = [(start + t) % n_items for t in range(length)]
        for t in range(length - 3):  # the last three (train, valid, test targets) stay on the walk
            if rng.random() < 0.1:
                seq[t] = int(rng.integers(n_items))
        sequences[f"u{u}"] = [f"i{s}" for s in seq]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"Item {i}" for i in range(n_items)]})
    ds = to_prepared(RawDataset(items=items, sequences=sequences), "synthetic")
    manifest = build_manifest(kind="dataset", config={}, metrics=compute_stats(ds))
    save_prepared(ds, datasets_dir() / "synthetic", manifest)
    return load_prepared("synthetic")
