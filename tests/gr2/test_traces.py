"""The heuristic teacher and trace generation: modes, acceptance, provenance, files."""

from __future__ import annotations

import json

import pytest

from data.errors import DataError
from gr2.rerank_format import parse_answer
from gr2.teachers import HeuristicTeacher, HeuristicTeacherConfig
from gr2.traces import TraceConfig, generate_traces, load_traces, write_traces


@pytest.fixture(scope="module")
def teacher(ml100k_catalog, ml100k_cooc):
    return HeuristicTeacher(ml100k_catalog, ml100k_cooc)


def test_targeted_mode_accepts_every_example_with_a_candidate_target(teacher, ml100k_catalog, ml100k_examples):
    records, summary = generate_traces(ml100k_examples, ml100k_catalog, teacher, TraceConfig(mode="targeted"))
    assert summary["skipped_target_not_candidate"] == 10 and summary["attempted"] == 50
    assert summary["acceptance_rate"] == 1.0 and summary["teacher_calls"] == 50
    for r in records:
        assert r["ranking"][0] == r["target_index"]
        assert r["provenance"]["heuristic"] is True and r["provenance"]["mode"] == "targeted"
        assert all(0 <= e < len(r["history"]) for e in r["evidence"])
        assert r["messages"][1]["content"].count("<|sid_begin|>") == len(r["history"]) + 10


def test_rejection_mode_keeps_only_correct_top1(teacher, ml100k_catalog, ml100k_examples):
    config = TraceConfig(mode="rejection", max_samples=4, seed=1)
    records, summary = generate_traces(ml100k_examples, ml100k_catalog, teacher, config)
    assert 0 < summary["acceptance_rate"] < 1
    assert summary["teacher_calls"] <= 4 * summary["attempted"]
    for r in records:
        sids = ml100k_catalog.sids.sids(r["candidates"])
        parsed = parse_answer(r["answer"], sids)
        assert parsed.valid and parsed.order[0] == r["target_index"] and 1 <= r["samples"] <= 4
    # more samples accept at least as many examples (same seed stream per example order)
    more, summary8 = generate_traces(ml100k_examples, ml100k_catalog, teacher,
                                     TraceConfig(mode="rejection", max_samples=16, seed=1))
    assert summary8["accepted"] >= summary["accepted"]


def test_distill_mode_keeps_the_greedy_teachers_one_answer_whatever_it_ranks_first(ml100k_catalog, ml100k_cooc,
                                                                                  ml100k_examples):
    greedy = HeuristicTeacher(ml100k_catalog, ml100k_cooc, HeuristicTeacherConfig(temperature=0.0, promote=3))
    records, summary = generate_traces(ml100k_examples, ml100k_catalog, greedy, TraceConfig(mode="distill"))
    assert summary["accepted"] == summary["attempted"] == summary["teacher_calls"] == 50
    firsts = [r["ranking"][0] == r["target_index"] for r in records]
    assert any(firsts) and not all(firsts)  # the teacher's own policy, right or wrong
    for r in records:  # promote=3: the rest keeps the pre-rank order
        rest = r["ranking"][3:]
        assert rest == sorted(rest)
    again, _ = generate_traces(ml100k_examples, ml100k_catalog, greedy, TraceConfig(mode="distill", seed=5))
    assert [r["ranking"] for r in again] == [r["ranking"] for r in records]  # greedy: no sampling noise


def test_rationale_cites_real_evidence(ml100k_catalog, ml100k_cooc, ml100k_examples):
    greedy = HeuristicTeacher(ml100k_catalog, ml100k_cooc, HeuristicTeacherConfig(prior_weight=0, temperature=0))
    import numpy as np

    for ex in ml100k_examples[:20]:
        reply = greedy.reply(ex, [], reveal_target=False, rng=np.random.default_rng(0))
        score, overlap, cooc = greedy.scores(ex)
        top = int(np.argmax(score))
        parsed = parse_answer(reply.text, ml100k_catalog.candidate_sids(ex))
        assert parsed.order[0] == top
        if reply.evidence:
            cited = ml100k_catalog.titles[ex.history[reply.evidence[0]]][:20]
            assert cited in reply.text


def test_write_and_load(tmp_path, teacher, ml100k_catalog, ml100k_examples):
    records, summary = generate_traces(ml100k_examples[:12], ml100k_catalog, teacher, TraceConfig(mode="targeted"))
    path = write_traces(tmp_path / "traces.jsonl", records, summary)
    assert load_traces(path) == records
    assert json.loads(path.with_suffix(".summary.json").read_text())["accepted"] == len(records)
    path.write_text(path.read_text() + '{"user": 1}\n')
    with pytest.raises(DataError, match="trace lacks fields") as err:
        load_traces(path)
    assert err.value.line == len(records) + 1
    with pytest.raises(ValueError, match="unknown trace mode"):
        generate_traces([], ml100k_catalog, teacher, TraceConfig(mode="greedy"))  # type: ignore[arg-type]


class FailingTeacher:
    """The heuristic teacher, until its endpoint 'goes down' after ``calls`` replies."""

    def __init__(self, inner, calls: int):
        self.inner, self.left, self.name, self.calls = inner, calls, inner.name, 0

    def reply(self, *args, **kwargs):
        if self.left == 0:
            raise ConnectionError("teacher endpoint went away")
        self.left -= 1
        self.calls += 1
        return self.inner.reply(*args, **kwargs)


def test_a_teacher_failing_half_way_loses_nothing_and_the_rerun_resumes(teacher, ml100k_catalog, ml100k_examples,
                                                                        tmp_path):
    config = TraceConfig(mode="rejection", max_samples=4, seed=3)
    whole, whole_summary = generate_traces(ml100k_examples, ml100k_catalog, teacher, config)
    progress = tmp_path / "traces.partial.jsonl"
    with pytest.raises(ConnectionError):
        generate_traces(ml100k_examples, ml100k_catalog, FailingTeacher(teacher, 40), config, progress)
    finished = progress.read_text().splitlines()[1:]  # after the header: one line per finished example
    assert 5 < len(finished) < len(ml100k_examples)
    with open(progress, "a") as fh:
        fh.write('{"key": ["test", 1')  # a line cut short by a kill: dropped, not an error

    counting = FailingTeacher(teacher, -1)
    records, summary = generate_traces(ml100k_examples, ml100k_catalog, counting, config, progress)
    assert records == whole  # as if the run had never stopped
    assert {k: v for k, v in summary.items() if k != "resumed_examples"} == {
        k: v for k, v in whole_summary.items() if k != "resumed_examples"}
    assert summary["resumed_examples"] == len(finished)
    assert counting.calls < whole_summary["teacher_calls"]  # the finished examples were not asked again
    lines = progress.read_text().splitlines()
    assert len(lines) == 1 + len(ml100k_examples) and all(json.loads(line) for line in lines)

    with pytest.raises(DataError, match="progress file of another trace run"):
        generate_traces(ml100k_examples, ml100k_catalog, teacher, TraceConfig(mode="targeted"), progress)


def test_traces_stage_resumes_and_leaves_only_the_finished_file(teacher, ml100k_catalog, ml100k_examples, tmp_path):
    """`gr2 traces generate` (Pipeline.run(["traces"])): a failed run leaves its progress, the rerun completes it."""
    from gr2.cli.pipeline import Pipeline
    from gr2.config import Recipe

    pipeline = Pipeline(Recipe(), tmp_path / "run")
    pipeline.__dict__["catalog"] = ml100k_catalog
    pipeline.examples = lambda *args, **kwargs: ml100k_examples
    pipeline.teacher = lambda: FailingTeacher(teacher, 30)
    with pytest.raises(ConnectionError):
        pipeline.run(["traces"])
    traces = pipeline.layout.traces
    assert not traces.exists() and traces.with_suffix(".partial.jsonl").is_file()

    pipeline.teacher = lambda: teacher
    pipeline.run(["traces"])
    summary = json.loads(traces.with_suffix(".summary.json").read_text())
    assert summary["resumed_examples"] > 0 and summary["examples"] == len(ml100k_examples)
    assert len(load_traces(traces)) == summary["accepted"]
    assert not traces.with_suffix(".partial.jsonl").exists()
