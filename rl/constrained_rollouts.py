"""Rollouts decoded under the answer constraint, so RL spends its samples on rankings, not on syntax.

A small student may write the answer's JSON shape yet fail to copy candidate SIDs; then every
rollout is unparseable, every reward is -1 and no group carries a signal. Decoding rollouts under
``gr2.answer_constraint`` (as serving decodes) makes every rollout a valid
permutation, and the rewards differ only by where the target lands. The trainer still scores the
sampled tokens with the unconstrained policy, so the update also raises the probability of the
well-formed answers themselves.

``rollout_constraint="candidates"`` keeps the shape and the candidate SIDs but allows repeats, so a
rollout is a valid permutation only when the policy avoids them: the format bonus then pays for
something, which is where GR2's naive reward can be gamed by copying the input order.

TRL's ``GRPOTrainer`` takes no logits processor, so this wraps the model's ``generate`` (what TRL's
transformers rollout path calls) on the instance: each prompt's candidates are read back from the
rendered prompt, so nothing needs to travel beside the token ids. vLLM rollouts (GPU) are not
affected; there the server's structured outputs do the same job.
"""

from __future__ import annotations

from typing import Any

from transformers import LogitsProcessorList

from gr2.answer_constraint import RerankAnswerConstraint, prompt_candidate_sids


def constrain_rollouts(model: Any, tokenizer: Any, max_reasoning_tokens: int = 64, unique: bool = True) -> None:
    """Make ``model.generate`` decode only well-formed rerank answers for the rerank prompts it is given:
    valid permutations, or with ``unique=False`` any K candidate SIDs."""
    unconstrained = model.generate

    def generate(*args: Any, **kwargs: Any):
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        prompts = tokenizer.batch_decode(input_ids, skip_special_tokens=False)
        constraint = RerankAnswerConstraint(tokenizer, [prompt_candidate_sids(p) for p in prompts],
                                            input_ids.shape[1], max_reasoning_tokens, unique)
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        processors.append(constraint)
        return unconstrained(*args, logits_processor=processors, **kwargs)

    model.generate = generate
