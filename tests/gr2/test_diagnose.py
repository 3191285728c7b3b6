import pytest

from gr2.diagnose import disagreement_profile, keeps_tail_order, kendall_tau
from gr2.rerank_data import RerankExample


def example(target_index: int, k: int = 5) -> RerankExample:
    candidates = list(range(100, 100 + k))
    return RerankExample(user=0, history=[1, 2], candidates=candidates, target=candidates[target_index])


def test_kendall_tau_identity_reverse_and_one_swap():
    assert kendall_tau([0, 1, 2, 3]) == 1.0
    assert kendall_tau([3, 2, 1, 0]) == -1.0
    assert kendall_tau([1, 0, 2, 3]) == pytest.approx(4 / 6)


def test_tail_order_ignores_the_head_only():
    assert keeps_tail_order([4, 2, 0, 1, 3], head=2)
    assert not keeps_tail_order([4, 2, 1, 0, 3], head=2)
    assert keeps_tail_order([4, 2, 1, 0, 3], head=4)


def test_profile_separates_a_good_promoter_from_a_shuffler():
    # targets at pre-rank positions 2, 0, 3: the teacher promotes the target when it is not first already;
    # the student shuffles the tail and promotes the wrong item, demoting a correct first place once
    examples = [example(2), example(0), example(3)]
    teacher = [[2, 0, 1, 3, 4], [0, 1, 2, 3, 4], [3, 0, 1, 2, 4]]
    student = [[1, 0, 4, 3, 2], [4, 0, 1, 2, 3], [0, 1, 2, 3, 4]]
    profile = disagreement_profile(examples, student, teacher, head=1)
    rows = {r["system"]: r for r in profile["rows"]}
    t, s = rows["teacher (greedy)"], rows["student"]
    assert rows["pre-rank"]["new top-1"] == 0.0 and rows["pre-rank"]["kendall tau to pre-rank"] == 1.0
    assert t["new top-1"] == pytest.approx(2 / 3) and t["new top-1 is the target"] == 1.0
    assert t["replaced top-1 was the target"] == 0.0 and t["tail keeps pre-rank order"] == 1.0
    assert t["target up"] == pytest.approx(2 / 3) and t["target down"] == 0.0
    assert s["new top-1"] == pytest.approx(2 / 3) and s["new top-1 is the target"] == 0.0
    assert s["replaced top-1 was the target"] == 0.5  # the second example's correct first place
    assert s["tail keeps pre-rank order"] == pytest.approx(2 / 3)  # the first answer's tail is shuffled
    assert s["target down"] == pytest.approx(2 / 3) and s["target same"] == pytest.approx(1 / 3)
    agreement = profile["position agreement"]
    assert agreement["student = teacher"][0] == 0.0
    assert agreement["student = pre-rank"][0] == pytest.approx(1 / 3)
    assert agreement["teacher = pre-rank"][4] == 1.0


def test_profile_refuses_examples_without_their_target():
    missing = RerankExample(user=0, history=[1], candidates=[5, 6], target=9)
    with pytest.raises(ValueError, match="target is a candidate"):
        disagreement_profile([missing], [[0, 1]], [[0, 1]])
