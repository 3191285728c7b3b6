"""Evidence notes: the strongest recent co-occurrence per candidate, cross-fitted for train examples."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gr2.prompt_evidence import CooccurrenceEvidence, level
from gr2.rerank_data import RerankExample
from gr2.teachers import CrossFitCooccurrence


def matrix(pairs: dict[tuple[int, int], float], n: int = 12) -> sp.csr_matrix:
    m = sp.lil_matrix((n, n))
    for (a, b), v in pairs.items():
        m[a, b] = v
    return m.tocsr()


def notes(strengths: np.ndarray) -> list[str]:
    return [level(v) for v in strengths]


def test_notes_give_each_candidate_its_strongest_recent_co_occurrence_level():
    evidence = CooccurrenceEvidence(None)
    # history 0, 1, 2 (2 most recent); candidates 5..8
    m = matrix({(2, 5): 10.0, (0, 6): 5.0, (1, 6): 1.0, (2, 7): 0.5})
    words = notes(evidence.strengths_from(m, [0, 1, 2], [5, 6, 7, 8]))
    assert words[0] == "strong"  # full strength on the most recent item
    assert words[1] == "some"  # 0.5 x 0.8^2 = 0.32 from the oldest item, above item 2's 0.1 x 0.8
    assert words[2] == "weak" and words[3] == ""
    assert notes(evidence.strengths_from(matrix({}), [0, 1], [5, 6])) == ["", ""]


def test_train_examples_read_their_fold_and_others_the_full_matrix():
    full = matrix({(1, 5): 1.0})
    folds = [matrix({}), matrix({(1, 6): 1.0})]
    cooc = CrossFitCooccurrence(full, folds, fold_of=np.array([0, 1]))
    evidence = CooccurrenceEvidence(cooc)
    assert notes(evidence.strengths(RerankExample(0, [1], [5, 6], 5, "train"))) == ["", ""]  # fold 0 never saw it
    assert notes(evidence.strengths(RerankExample(1, [1], [5, 6], 5, "train"))) == ["", "strong"]
    assert notes(evidence.strengths(RerankExample(0, [1], [5, 6], 5, "test"))) == ["strong", ""]
    assert notes(evidence.strengths_for([1], [5, 6])) == ["strong", ""]


def evidence_prompt(catalog, example, strengths: dict[int, float]) -> str:
    """The example's prompt with evidence from its most recent history item to candidates (position -> count)."""
    import dataclasses

    last = example.history[-1]
    pairs = {(last, example.candidates[i]): v for i, v in strengths.items()}
    evidence = CooccurrenceEvidence(CrossFitCooccurrence(matrix(pairs, len(catalog.titles))))
    return dataclasses.replace(catalog, evidence=evidence).messages(example)[1]["content"]


def test_evidence_is_one_line_after_the_candidates_strongest_first(ml100k_catalog, ml100k_examples):
    ex = ml100k_examples[0]
    prompt = evidence_prompt(ml100k_catalog, ex, {6: 1.0, 2: 0.3, 4: 1.0})
    assert prompt.count("Picked with") == 1
    assert 'Picked with your recent items: "5" (strong), "7" (strong), "3" (some)\n' in prompt
    assert prompt.index("Picked with") > prompt.index("10. ")  # after every candidate line
    assert ml100k_catalog.messages(ex)[1]["content"].count("Picked with") == 0  # no evidence, no line


def test_evidence_line_orders_a_level_by_its_strength(ml100k_catalog, ml100k_examples):
    prompt = evidence_prompt(ml100k_catalog, ml100k_examples[0], {4: 0.8, 6: 1.0, 2: 0.6})
    assert 'Picked with your recent items: "7" (strong), "5" (strong), "3" (strong)\n' in prompt


def test_a_co_occurrence_teacher_promotes_the_first_entries_of_the_evidence_line(ml100k_catalog, ml100k_examples):
    """With title overlap and the position prior off, the teacher's picks are a function of the prompt:
    what a student can learn to read off it."""
    import dataclasses
    import re

    from gr2.rerank_format import parse_answer
    from gr2.teachers import HeuristicTeacher, HeuristicTeacherConfig

    n = len(ml100k_catalog.titles)
    rng = np.random.default_rng(0)
    counts = sp.random(n, n, density=0.05, random_state=1, data_rvs=lambda k: rng.integers(1, 9, k)).tocsr()
    cooc = CrossFitCooccurrence(counts)
    catalog = dataclasses.replace(ml100k_catalog, evidence=CooccurrenceEvidence(cooc))
    teacher = HeuristicTeacher(catalog, cooc, HeuristicTeacherConfig(
        promote=3, overlap_weight=0.0, prior_weight=0.0, temperature=0.0))
    checked = 0
    for ex in ml100k_examples:
        messages = catalog.messages(ex)
        line = re.search(r"Picked with your recent items: (.*)\n", messages[1]["content"])
        if line is None or len(line.group(1).split(", ")) < 3:
            continue
        listed = [int(entry.split(" ")[0].strip('"')) - 1 for entry in line.group(1).split(", ")]
        reply = teacher.reply(ex, messages, reveal_target=False, rng=np.random.default_rng(0))
        order = parse_answer(reply.text, catalog.answer_keys(ex)).order
        assert order[:3] == listed[:3]
        checked += 1
    assert checked >= 5
