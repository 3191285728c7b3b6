import numpy as np
import pytest

from tokenizer import (
    add_dedup_level,
    collision_stats,
    dedup_codes,
    first_level_cohesion,
    prefix_ngram_ids,
    uniqueness,
    utilization,
)


def test_dedup_ranks_collisions_in_item_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 3]])
    assert dedup_codes(codes).tolist() == [0, 0, 1, 2, 1, 0]
    full, size = add_dedup_level(codes)
    assert size == 3 and full.shape == (6, 3) and uniqueness(full) == 1.0
    assert np.array_equal(full[:, :2], codes)


def test_dedup_on_random_codes_is_unique_and_deterministic():
    codes = np.random.default_rng(0).integers(0, 4, size=(500, 3))
    first, second = dedup_codes(codes), dedup_codes(codes.copy())
    assert np.array_equal(first, second)
    assert uniqueness(np.c_[codes, first]) == 1.0
    assert uniqueness(codes) < 1.0


def test_metrics_against_brute_force():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 5, size=(60, 2))
    assert uniqueness(codes) == len({tuple(r) for r in codes.tolist()}) / 60
    stats = collision_stats(codes)
    groups = {}
    for r in codes.tolist():
        groups[tuple(r)] = groups.get(tuple(r), 0) + 1
    assert stats["largest_collision_group"] == max(groups.values())
    assert stats["items_in_collisions"] == sum(v for v in groups.values() if v > 1)
    assert utilization(codes, 10) == [len(set(codes[:, 0])) / 10, len(set(codes[:, 1])) / 10]

    x = rng.normal(size=(60, 8))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    same = [sims[i, j] for i in range(60) for j in range(60) if i != j and codes[i, 0] == codes[j, 0]]
    every = [sims[i, j] for i in range(60) for j in range(60) if i != j]
    got = first_level_cohesion(x, codes)
    assert got["same_first_code_cosine"] == pytest.approx(np.mean(same))
    assert got["random_pair_cosine"] == pytest.approx(np.mean(every))


def test_prefix_ngrams_share_ids_exactly_along_shared_prefixes():
    codes = np.array([[1, 2, 3], [1, 2, 4], [1, 5, 3], [2, 2, 3]])
    ids = prefix_ngram_ids(codes, num_buckets=1 << 20)
    assert ids.shape == (4, 3) and ids.min() >= 1 and ids.max() < 1 << 20
    assert ids[0, 0] == ids[1, 0] == ids[2, 0] != ids[3, 0]
    assert ids[0, 1] == ids[1, 1] and ids[0, 1] != ids[2, 1]
    assert len(set(ids[:, 2].tolist())) == 4  # distinct full codes
    assert len(set(ids.ravel().tolist())) == 2 + 3 + 4  # one id per distinct prefix
    assert np.array_equal(ids, prefix_ngram_ids(codes.copy(), num_buckets=1 << 20))  # stable
    assert not np.array_equal(ids, prefix_ngram_ids(codes, num_buckets=1 << 20, salt=1))
    # prefix length is hashed too: (0,) and (0, 0) must not be the same feature
    z = prefix_ngram_ids(np.zeros((1, 2), dtype=np.int64))
    assert z[0, 0] != z[0, 1]


def test_prefix_ngrams_spread_over_buckets():
    codes = np.random.default_rng(0).integers(0, 256, size=(20000, 3))
    ids = prefix_ngram_ids(codes, num_buckets=1 << 24)
    full = {tuple(r) for r in codes.tolist()}
    assert len(set(ids[:, 2].tolist())) >= len(full) - 20  # ~12 expected hash collisions at 2^24 buckets


def test_prefix_ngrams_reject_bad_input():
    with pytest.raises(ValueError):
        prefix_ngram_ids(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError):
        prefix_ngram_ids(np.array([[-1, 0]]))
    with pytest.raises(ValueError):
        prefix_ngram_ids(np.array([[1, 0]]), num_buckets=1)
