"""Same-budget emphasis baselines on real ML-100K histories: the ``cited`` baseline marks what the SFT prompts
marked (the heuristic teacher's citations), then the history items most picked with the candidates."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from gr2.teachers import HeuristicTeacher
from gr2.teachers.heuristic import HeuristicTeacherConfig
from hilight.methods import build_methods
from hilight.spans import Budget, HistoryLayout, kept_share


@pytest.fixture(scope="module")
def tokenizer(tiny_sid_model):
    return AutoTokenizer.from_pretrained(tiny_sid_model)


@pytest.fixture(scope="module")
def teacher(ml100k_catalog, ml100k_cooc):
    return HeuristicTeacher(ml100k_catalog, ml100k_cooc, HeuristicTeacherConfig(temperature=0.0, promote=3))


def test_cited_marks_the_teachers_evidence_first_then_the_most_picked_items(ml100k_catalog, ml100k_cooc, tokenizer,
                                                                           teacher, ml100k_examples):
    cited = 0
    for ex in ml100k_examples[:20]:
        evidence = teacher.reply(ex, [], reveal_target=False, rng=np.random.default_rng(0)).evidence
        budget = Budget(share=1.0, max_spans=len(evidence) + 1)
        layout = HistoryLayout.for_example(tokenizer, ml100k_catalog, ex)
        [emphasis] = build_methods(["cited"], budget, teacher=teacher)["cited"]([ex], [layout])
        chosen = {s.item for s in emphasis.spans}
        # the strongest co-occurrence with any candidate among the items the teacher did not cite
        counts = np.asarray(ml100k_cooc[ex.history][:, ex.candidates].todense()).max(axis=1)
        others = [i for i in range(len(ex.history)) if i not in evidence]
        strongest = max(others, key=lambda i: (counts[i], -i))
        assert chosen == {*evidence, strongest}, ex.user
        cited += bool(evidence)
    assert cited >= 10  # ML-100K histories nearly always hold an item picked with some candidate


def test_cited_stays_within_the_budget(ml100k_catalog, tokenizer, teacher, ml100k_examples):
    budget = Budget(share=0.25, max_spans=2)
    layouts = [HistoryLayout.for_example(tokenizer, ml100k_catalog, ex) for ex in ml100k_examples[:20]]
    emphases = build_methods(["cited"], budget, teacher=teacher)["cited"](ml100k_examples[:20], layouts)
    assert all(len(e.spans) <= 2 and kept_share(lay, e.spans) <= 0.25 for lay, e in zip(layouts, emphases,
                                                                                         strict=True))
    assert np.mean([bool(e.spans) for e in emphases]) > 0.5


def test_cited_needs_the_teacher():
    with pytest.raises(ValueError, match="heuristic teacher"):
        build_methods(["cited"], Budget())
