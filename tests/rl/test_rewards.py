"""Hand-made cases for GR2's rewards, including the reward-hacking case the conditional form closes."""

from __future__ import annotations

import pytest

from gr2.rerank_format import ParsedAnswer, format_answer, parse_answer
from rl.rewards import input_order_tau, score_answer

SIDS = [f"<|sid_begin|><s_a_{i}><|sid_end|>" for i in range(10)]


def answer(order: list[int]) -> ParsedAnswer:
    return parse_answer(format_answer("r", [SIDS[i] for i in order]), SIDS)


IDENTITY = list(range(10))


def test_identity_with_target_not_on_top_gets_no_format_bonus():
    target = 3  # pre-rank 4th; copying the input keeps it 4th
    cond = score_answer(answer(IDENTITY), target, "conditional")
    naive = score_answer(answer(IDENTITY), target, "naive")
    assert cond.identity and cond.rank_gain == 0 and cond.format_ok == 1
    assert cond.reward == 0.0  # no bonus for copying
    assert naive.reward == pytest.approx(0.2)  # the naive sum pays for copying: the hack


def test_identity_with_target_already_first_keeps_bonus():
    assert score_answer(answer(IDENTITY), 0, "conditional").reward == pytest.approx(0.2)


def test_moving_target_up_and_down():
    up = IDENTITY.copy()
    up.remove(5)
    up.insert(0, 5)  # target from 6th to 1st
    r = score_answer(answer(up), 5, "conditional")
    assert (r.pre_rank, r.new_rank) == (6, 1)
    assert r.reward == pytest.approx(0.5 + 0.2)
    down = IDENTITY.copy()
    down.remove(2)
    down.append(2)  # target from 3rd to 10th
    r = score_answer(answer(down), 2, "conditional")
    assert r.reward == pytest.approx(-0.7)  # no bonus when it made things worse
    assert score_answer(answer(down), 2, "naive").reward == pytest.approx(-0.7 + 0.2)
    # DESIGN: a target pre-ranked first keeps the bonus (R_rank <= 0 there only if it was moved down)
    first_down = IDENTITY[1:] + [0]
    assert score_answer(answer(first_down), 0, "conditional").reward == pytest.approx(-0.9 + 0.2)


def test_repaired_answer_earns_rank_but_no_format():
    text = "<think>x</think>" + '{"recommendations": ["' + SIDS[4].replace('"', '') + '"]}'
    parsed = parse_answer(text, SIDS)
    r = score_answer(parsed, 4, "conditional")
    assert parsed.repaired and r.format_ok == 0 and r.reward == pytest.approx(0.4)


def test_unparseable_is_minus_one():
    parsed = parse_answer("no idea", SIDS)
    assert score_answer(parsed, 2, "conditional").reward == -1.0
    assert score_answer(parsed, 2, "naive").reward == -1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="not a candidate position"):
        score_answer(answer(IDENTITY), 10)
    with pytest.raises(ValueError, match="unknown reward kind"):
        score_answer(answer(IDENTITY), 1, "greedy")  # type: ignore[arg-type]


def test_input_order_tau_grades_how_much_of_the_input_order_is_kept():
    assert input_order_tau([0, 1, 2, 3]) == 1.0 and input_order_tau([3, 2, 1, 0]) == -1.0
    assert input_order_tau([1, 0, 2, 3]) == pytest.approx(1 - 2 * 1 / 6)  # one of six pairs swapped
    assert input_order_tau([0]) == 1.0
