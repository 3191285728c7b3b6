"""Fixtures for the reranker stages: a SID catalogue and rerank examples on ML-100K."""

from __future__ import annotations

import numpy as np
import pytest

from data.cooccurrence import cooccurrence_matrix
from gr2.rerank_data import ItemCatalog, RerankExample
from tokenizer.sid import SemanticIDs


@pytest.fixture(scope="session")
def ml100k_catalog(ml100k) -> ItemCatalog:
    """Two-level SIDs that are simply the item index in base 64: unique, cheap, good enough for format tests."""
    idx = np.arange(ml100k.num_items)
    return ItemCatalog.build(ml100k, SemanticIDs(np.stack([idx // 64, idx % 64], axis=1), (64, 64)))


@pytest.fixture(scope="session")
def ml100k_cooc(ml100k):
    return cooccurrence_matrix(ml100k.train_sequences(), ml100k.num_items)


@pytest.fixture(scope="session")
def ml100k_examples(ml100k) -> list[RerankExample]:
    """Test-split examples for 60 users: 10 candidates, target at a random position (absent for every 6th)."""
    rng = np.random.default_rng(0)
    test = ml100k.eval_examples("test")
    examples = []
    for n, (u, hist, target) in enumerate(zip(test.users[:60], test.histories[:60], test.targets[:60], strict=True)):
        pool = np.setdiff1d(np.arange(ml100k.num_items), np.append(hist, target))
        cands = rng.choice(pool, size=10, replace=False).tolist()
        if n % 6:
            cands[int(rng.integers(10))] = int(target)
        examples.append(RerankExample(int(u), hist[-10:].tolist(), cands, int(target), "test"))
    return examples
