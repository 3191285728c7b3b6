"""Emphasis headroom: the single-item answers of a solver whose reaction to tags is known exactly.

The rule solver of the learning test lifts the target from last to first when an emphasised line mentions a
1995 film, so every figure has a value computed here from the prompts alone: the oracle wins exactly on the
users who show such a film, and a position helps exactly when its line holds one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from hilight.headroom import measure_headroom, write_headroom
from hilight.spans import Budget, HistoryLayout, choose_spans
from tests.hilight.test_learning import KEY, KeywordSolver, keyword_examples


def test_headroom_finds_what_the_solver_reacts_to(ml100k, ml100k_catalog, tiny_sid_model, tmp_path):
    examples = keyword_examples(ml100k, ml100k_catalog, "valid", range(600, 943), 30)
    tokenizer = AutoTokenizer.from_pretrained(tiny_sid_model)
    budget = Budget()
    result = measure_headroom(examples, KeywordSolver(), ml100k_catalog, tokenizer, budget)

    hits = {}  # position from the end -> whether that line (emphasisable alone) holds a 1995 film, per user
    for ex in examples:
        layout = HistoryLayout.for_example(tokenizer, ml100k_catalog, ex)
        for line, text in enumerate(layout.lines):
            if choose_spans(layout, [line], budget, "items"):
                hits.setdefault(len(layout.lines) - line, []).append(KEY in text)
    any_hit = np.mean([any(KEY in t for t in HistoryLayout.for_example(tokenizer, ml100k_catalog, ex).lines)
                       for ex in examples])
    summary = result["summary"]
    assert summary["users"] == 30 and summary["reward none"] == 0.0  # untagged: the target stays last
    assert summary["reward oracle best item"] == pytest.approx(any_hit) and any_hit > 0.5
    assert summary["share reward changed by some item"] == pytest.approx(any_hit)
    assert summary["solver calls"] == 30 + sum(len(v) for v in hits.values())
    rows = {r["position from the end"]: r for r in result["rows"]}
    assert set(rows) == set(hits)
    for position, flags in hits.items():
        assert rows[position]["users"] == len(flags)
        assert rows[position]["reward vs none"] == pytest.approx(np.mean(flags))  # 0 -> 1 where it hits
        assert rows[position]["hurt"] == 0.0 and rows[position]["helped"] == pytest.approx(np.mean(flags))
    best = max(hits, key=lambda p: np.mean(hits[p]))
    assert summary["best fixed position reward vs none"] == pytest.approx(np.mean(hits[best]))

    paths = write_headroom(result, tmp_path, "headroom-valid", "headroom")
    assert json.loads(paths["json"].read_text())["summary"]["users"] == 30
    assert "- reward oracle best item: " in paths["md"].read_text() and "| latest item |" in \
        paths["md"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_headroom_needs_a_target_among_the_candidates(ml100k, ml100k_catalog, tiny_sid_model):
    examples = keyword_examples(ml100k, ml100k_catalog, "valid", range(600, 700), 2)
    examples = [type(ex)(ex.user, ex.history, ex.candidates, -1, ex.split) for ex in examples]
    with pytest.raises(ValueError, match="nothing to measure"):
        measure_headroom(examples, KeywordSolver(), ml100k_catalog, AutoTokenizer.from_pretrained(tiny_sid_model),
                         Budget())
