"""Exact-permutation decoding inside vLLM: the served twin of ``gr2.answer_constraint``.

A grammar (vLLM structured outputs) can say "a JSON list of candidate SIDs" but not "each exactly
once": a context-free grammar of all K! orders is too large. This logits processor runs the same
state machine as the transformers constraint used in evaluation and RL rollouts, so the served
answer is always an exact permutation of the request's candidates (no repair), and the server
decodes exactly what ``gr2 eval rerank`` measured.

vLLM builds the processor once per engine (in its engine process) and asks it for a per-request
function; a request opts in through ``SamplingParams.extra_args`` (``rerank_request_args``). That
function keeps the request's state machine between steps (``ConstraintCursor``): vLLM hands it the
whole output so far at every token, and replaying it would make a long answer quadratic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from gr2.answer_constraint import RerankAnswerConstraint

CANDIDATES_KEY = "gr2_rerank_candidates"
REASONING_KEY = "gr2_max_reasoning_tokens"
# what ``logits_processors`` in vLLM's engine arguments names (loaded by import in the engine process)
PROCESSOR_PATH = f"{__name__}:RerankPermutationProcessor"


def rerank_request_args(candidate_sids: Sequence[str], max_reasoning_tokens: int) -> dict:
    """``SamplingParams.extra_args`` that switch the constraint on for one request."""
    return {CANDIDATES_KEY: list(candidate_sids), REASONING_KEY: int(max_reasoning_tokens)}


class RerankPermutationProcessor(AdapterLogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        from transformers import AutoTokenizer

        super().__init__(vllm_config, device, is_pin_memory)
        self.tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        args = sampling_params.extra_args or {}
        sids = args.get(CANDIDATES_KEY)
        if sids is not None and (not isinstance(sids, list) or len(set(sids)) != len(sids) or not sids):
            raise ValueError(f"{CANDIDATES_KEY} must be a non-empty list of distinct SIDs")

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token wins

    def new_req_logits_processor(self, params: SamplingParams):
        args = params.extra_args or {}
        if not args.get(CANDIDATES_KEY):
            return None
        constraint = RerankAnswerConstraint(self.tokenizer, [args[CANDIDATES_KEY]], prompt_length=0,
                                            max_reasoning_tokens=int(args.get(REASONING_KEY, 160)))
        cursor = constraint.cursor(0)  # per request: each step costs the new token, not a replay of the output
        banned: torch.Tensor | None = None

        def apply(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            nonlocal banned
            allowed = cursor.advance(output_ids)
            if allowed is None:  # free reasoning: no SID, no end of turn
                if banned is None:
                    banned = torch.tensor(constraint.banned_in_reasoning, dtype=torch.long, device=logits.device)
                logits[banned] = float("-inf")
                return logits
            masked = torch.full_like(logits, float("-inf"))
            masked[allowed] = logits[allowed]
            return masked

        return apply
