"""Evidence notes: the strongest recent co-occurrence per candidate, cross-fitted for train examples."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gr2.prompt_evidence import CooccurrenceEvidence
from gr2.rerank_data import RerankExample
from gr2.teachers import CrossFitCooccurrence


def matrix(pairs: dict[tuple[int, int], float], n: int = 12) -> sp.csr_matrix:
    m = sp.lil_matrix((n, n))
    for (a, b), v in pairs.items():
        m[a, b] = v
    return m.tocsr()


def test_notes_give_each_candidate_its_strongest_recent_co_occurrence_level():
    evidence = CooccurrenceEvidence(None)
    # history 0, 1, 2 (2 most recent); candidates 5..8
    m = matrix({(2, 5): 10.0, (0, 6): 5.0, (1, 6): 1.0, (2, 7): 0.5})
    notes = evidence.notes_from(m, [0, 1, 2], [5, 6, 7, 8])
    assert notes[0] == "strong"  # full strength on the most recent item
    assert notes[1] == "some"  # 0.5 x 0.8^2 = 0.32 from the oldest item, above item 2's 0.1 x 0.8
    assert notes[2] == "weak" and notes[3] == ""
    assert evidence.notes_from(matrix({}), [0, 1], [5, 6]) == ["", ""]


def test_train_examples_read_their_fold_and_others_the_full_matrix():
    full = matrix({(1, 5): 1.0})
    folds = [matrix({}), matrix({(1, 6): 1.0})]
    cooc = CrossFitCooccurrence(full, folds, fold_of=np.array([0, 1]))
    evidence = CooccurrenceEvidence(cooc)
    assert evidence.notes(RerankExample(0, [1], [5, 6], 5, "train")) == ["", ""]  # fold 0 never saw it
    assert evidence.notes(RerankExample(1, [1], [5, 6], 5, "train")) == ["", "strong"]
    assert evidence.notes(RerankExample(0, [1], [5, 6], 5, "test")) == ["strong", ""]
    assert evidence.notes_for([1], [5, 6]) == ["strong", ""]


def test_evidence_is_one_line_after_the_candidates_strongest_first(ml100k_catalog, ml100k_examples):
    import dataclasses

    ex = ml100k_examples[0]
    h = ex.history
    pairs = {(h[-1], ex.candidates[6]): 1.0, (h[-1], ex.candidates[2]): 0.3, (h[-1], ex.candidates[4]): 1.0}
    evidence = CooccurrenceEvidence(CrossFitCooccurrence(matrix(pairs, len(ml100k_catalog.titles))))
    catalog = dataclasses.replace(ml100k_catalog, evidence=evidence)
    prompt = catalog.messages(ex)[1]["content"]
    assert prompt.count("Picked with") == 1
    assert "Picked with your recent items: 5 (strong), 7 (strong), 3 (some)\n" in prompt
    assert prompt.index("Picked with") > prompt.index("10. ")  # after every candidate line
    assert ml100k_catalog.messages(ex)[1]["content"].count("Picked with") == 0  # no evidence, no line
