"""Spans under the budget, tags in the unaltered text, the units a policy gradient scores."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from gr2.rerank_format import (
    EMPHASIS_CLOSE,
    EMPHASIS_OPEN,
    build_messages,
    build_user_prompt,
    emphasize_text,
)
from hilight.spans import (
    Budget,
    HistoryLayout,
    Span,
    choose_spans,
    emphasis_map,
    kept_share,
    render_messages,
    rendered_units,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_sid_model):
    return AutoTokenizer.from_pretrained(tiny_sid_model)


@pytest.fixture(scope="module")
def example(ml100k_examples):
    return ml100k_examples[1]


def strip_tags(text: str) -> str:
    return text.replace(EMPHASIS_OPEN, "").replace(EMPHASIS_CLOSE, "")


def test_emphasize_text_inserts_tags_without_changing_the_text():
    text = "<|sid_begin|><s_a_1><|sid_end|> Toy Story (1995)"
    tagged = emphasize_text(text, [(35, 40), (0, 10)])
    assert strip_tags(tagged) == text
    assert tagged.startswith(EMPHASIS_OPEN + text[:10] + EMPHASIS_CLOSE)
    assert f"{EMPHASIS_OPEN}{text[35:40]}{EMPHASIS_CLOSE}" in tagged
    for bad in ([(3, 3)], [(0, 5), (4, 8)], [(0, len(text) + 1)]):
        with pytest.raises(ValueError):
            emphasize_text(text, bad)


def test_whole_item_spans_render_exactly_as_sft_prompts(ml100k_catalog, tokenizer, example):
    """HiLight's item spans are the SFT stage's emphasis format: one renderer, the same bytes."""
    layout = HistoryLayout.for_example(tokenizer, ml100k_catalog, example)
    spans = choose_spans(layout, [7, 2], Budget(share=0.5), "items")
    ours = render_messages(ml100k_catalog, example, spans)
    sft = ml100k_catalog.messages(example, emphasized_history=[2, 7])
    assert ours == sft
    assert ours[-1]["content"].count(EMPHASIS_OPEN) == 2


@pytest.mark.parametrize("granularity", ["items", "tokens"])
def test_budget_rules_hold_for_any_preference_order(ml100k_catalog, tokenizer, ml100k_examples, granularity):
    budget = Budget(share=0.25, max_spans=5)
    rng = np.random.default_rng(0)
    for ex in ml100k_examples[:20]:
        layout = HistoryLayout.for_example(tokenizer, ml100k_catalog, ex)
        order = rng.permutation(layout.units(granularity)).tolist()
        spans = choose_spans(layout, order, budget, granularity, window=6)
        assert 0 < len(spans) <= budget.max_spans
        assert sum(s.tokens for s in spans) <= 0.25 * layout.total_tokens
        assert kept_share(layout, spans) <= 0.25
        for a in spans:  # never overlapping, never touching, each inside its own line
            assert 0 <= a.start < a.end <= len(layout.lines[a.item])
            assert all(b is a or b.item != a.item or b.end < a.start or a.end < b.start for b in spans)
        messages = render_messages(ml100k_catalog, ex, spans)
        user = messages[-1]["content"]
        assert strip_tags(user) == build_user_prompt(ml100k_catalog.prompt_items(ex.history),
                                                     ml100k_catalog.prompt_items(ex.candidates))
        assert EMPHASIS_OPEN not in user.split("\nCandidates")[1]  # candidates are never tagged
        assert user.count(EMPHASIS_OPEN) == len(spans)


def test_token_windows_cover_whole_words_and_keep_sids_whole(ml100k_catalog, tokenizer, example):
    layout = HistoryLayout.for_example(tokenizer, ml100k_catalog, example)
    sid_end = layout.lines[0].index(" ")
    first_title_token = next(n for n, (s, _) in enumerate(layout.offsets[0]) if s >= sid_end)
    spans = choose_spans(layout, [first_title_token], Budget(share=1.0), "tokens", window=1)
    (span,) = spans
    line = layout.lines[0]
    assert span.item == 0 and (span.start == 0 or line[span.start - 1] == " ")
    assert span.end == len(line) or line[span.end] == " "
    assert "<|sid_begin|>" in line[span.start:span.end]  # the window reached the SID: it is taken whole
    assert line[span.start:span.end].count("<|sid_end|>") == 1


def test_rendered_units_are_the_spans_shown_not_the_mask_sampled(ml100k_catalog, tokenizer, example):
    layout = HistoryLayout.for_example(tokenizer, ml100k_catalog, example)
    # five items wanted, the budget shows two: only those two count as kept
    spans = choose_spans(layout, [9, 8, 7, 6, 5], Budget(share=0.25), "items")
    assert [s.item for s in spans] == [8, 9]
    units = rendered_units(layout, spans, "items")
    assert units.tolist() == [0.0] * 8 + [1.0, 1.0]
    token_units = rendered_units(layout, spans, "tokens")
    assert len(token_units) == layout.total_tokens
    assert token_units.sum() == sum(s.tokens for s in spans)


def test_prompt_only_instruction_sits_before_the_closing_request(ml100k_catalog, example):
    messages = render_messages(ml100k_catalog, example, instruction="Weigh the key items most.")
    catalog = ml100k_catalog
    plain = build_messages(catalog.prompt_items(example.history), catalog.prompt_items(example.candidates))
    assert messages[0] == plain[0]
    assert messages[-1]["content"].endswith("Weigh the key items most.\nRank all candidates.")
    assert messages[-1]["content"].replace("Weigh the key items most.\n", "") == plain[-1]["content"]


def test_emphasis_map_groups_spans_by_item():
    spans = [Span(1, 0, 4, 2), Span(1, 10, 12, 1), Span(3, 0, 9, 4)]
    assert emphasis_map(spans) == {1: [(0, 4), (10, 12)], 3: [(0, 9)]}
