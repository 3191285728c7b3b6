"""Co-occurrence on a hand-made case: direction, gap decay, popularity damping."""

from __future__ import annotations

import numpy as np
import pytest

from data.cooccurrence import cooccurrence_matrix


def test_hand_made_counts():
    seqs = [np.array([0, 1, 2]), np.array([0, 1])]
    m = cooccurrence_matrix(seqs, 4, window=2, backward_weight=0.5, popularity_alpha=0.0).toarray()
    assert m[0, 1] == pytest.approx(2.0)  # 1 follows 0 twice at gap 1
    assert m[1, 0] == pytest.approx(1.0)  # backwards, half weight
    assert m[0, 2] == pytest.approx(0.5)  # gap 2
    assert m[2, 0] == pytest.approx(0.25)
    assert m[3].sum() == 0 and np.all(np.diag(m) == 0)
    damped = cooccurrence_matrix(seqs, 4, window=2, popularity_alpha=1.0).toarray()
    assert damped[0, 1] == pytest.approx(2.0 / 2)  # item 1 appears twice


def test_empty_and_bad_window():
    assert cooccurrence_matrix([np.array([3])], 5).nnz == 0
    with pytest.raises(ValueError, match="window"):
        cooccurrence_matrix([], 3, window=0)
