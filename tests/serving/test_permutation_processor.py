"""vLLM's per-request permutation function keeps its state between steps instead of replaying the output.

Driven here the way vLLM drives it (the whole output list at every step, the same list growing), on
random logits: the masks equal the replaying constraint's at every step, the answer is an exact
permutation, and the replay (``RerankAnswerConstraint.allowed``) is never called.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from gr2.answer_constraint import RerankAnswerConstraint
from gr2.rerank_format import parse_answer


def test_processor_state_is_incremental(tiny_sid_model, ml100k_catalog, monkeypatch):
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from gr2.engines.permutation_constraint import RerankPermutationProcessor, rerank_request_args

    tok = AutoTokenizer.from_pretrained(tiny_sid_model)
    config = SimpleNamespace(model_config=SimpleNamespace(tokenizer=str(tiny_sid_model)))
    processor = RerankPermutationProcessor(config, torch.device("cpu"), False)
    sids = [ml100k_catalog.sids.sid(i) for i in range(40, 52)]
    reference = RerankAnswerConstraint(tok, [sids], 0, max_reasoning_tokens=12)
    expected = []  # the replaying constraint's allowed set at every step, recorded before replay is disabled
    torch.manual_seed(0)
    steps = [torch.randn(len(tok)) for _ in range(reference.token_budget(0))]
    output: list[int] = []
    for logits in steps:
        allowed = reference.allowed(0, output)
        expected.append(allowed)
        masked = logits.clone()
        if allowed is None:
            masked[reference.banned_in_reasoning] = float("-inf")
        else:
            keep = torch.full_like(masked, float("-inf"))
            keep[allowed] = masked[allowed]
            masked = keep
        output.append(int(masked.argmax()))
        if output[-1] == reference.end:
            break

    def no_replay(*args, **kwargs):
        raise AssertionError("the processor replayed the whole output")

    monkeypatch.setattr(RerankAnswerConstraint, "allowed", no_replay)
    apply = processor.new_req_logits_processor(SamplingParams(extra_args=rerank_request_args(sids, 12)))
    generated: list[int] = []  # vLLM passes this same list, growing, at every step
    for n, logits in enumerate(steps[: len(output)]):
        masked = apply(generated, logits.clone())
        finite = torch.isfinite(masked).nonzero().flatten().tolist()
        if expected[n] is not None:
            assert finite == sorted(expected[n]), n
        generated.append(int(masked.argmax()))
    assert generated == output
    answer = parse_answer(tok.decode(generated, skip_special_tokens=True), sids)
    assert answer.valid and sorted(answer.order) == list(range(len(sids)))

    # a request vLLM re-adds after preemption arrives with its output so far: the new state catches up at once
    resumed = processor.new_req_logits_processor(SamplingParams(extra_args=rerank_request_args(sids, 12)))
    half = output[: len(output) // 2]
    masked = resumed(list(half), steps[len(half)].clone())
    if expected[len(half)] is not None:
        assert torch.isfinite(masked).nonzero().flatten().tolist() == sorted(expected[len(half)])


def test_cursor_matches_replay_and_restarts(tiny_sid_model, ml100k_catalog):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sid_model)
    sids = [ml100k_catalog.sids.sid(i) for i in range(5)]
    constraint = RerankAnswerConstraint(tok, [sids], 0, max_reasoning_tokens=3)
    text = "<think>ab</think>" + '\n{"recommendations": ["' + '", "'.join(reversed(sids)) + '"]}'
    tokens = tok(text, add_special_tokens=False)["input_ids"] + [constraint.end]
    cursor = constraint.cursor(0)
    for n in range(len(tokens) + 1):
        assert cursor.advance(tokens[:n]) == constraint.allowed(0, tokens[:n]), n
    assert cursor.consumed == len(tokens)
    assert cursor.advance(tokens[:4]) == constraint.allowed(0, tokens[:4])  # shorter output: replayed afresh
