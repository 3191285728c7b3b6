"""Rollouts decoded under the answer constraint, and scored under the same constraint.

A small student may write the answer's JSON shape yet fail to copy candidate SIDs; then every
rollout is unparseable, every reward is -1 and no group carries a signal. Decoding rollouts under
``gr2.answer_constraint`` (as serving decodes) makes every rollout a valid permutation, and the
rewards differ only by where the target lands.

``rollout_constraint="candidates"`` keeps the shape and the candidate SIDs but allows repeats, so a
rollout is a valid permutation only when the policy avoids them: the format bonus then pays for
something, which is where GR2's naive reward can be gamed by copying the input order.

TRL's ``GRPOTrainer`` takes no logits processor, so ``constrain_rollouts`` wraps the model's
``generate`` (what TRL's transformers rollout path calls) on the instance: each prompt's candidates
are read back from the rendered prompt, so nothing needs to travel beside the token ids. vLLM
rollouts (GPU) are not constrained here.

The policy that samples is then the *masked* distribution: softmax over the tokens the constraint
allows at each step. TRL scores completions (the loss, the old log-probs of its importance ratios,
the reference log-probs) with the unmasked model, so a negative advantage would lower the sampled
token by raising every other one, forbidden tokens included, and the ratios would compare the
wrong distributions. ``ConstrainedScoringMixin`` makes the trainer score under the same mask:
log-softmax over the allowed tokens at every completion step, for log-probs and entropies alike.
Forbidden tokens then get exactly zero gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

from gr2.answer_constraint import RerankAnswerConstraint, prompt_answer_keys


@dataclass(frozen=True)
class RolloutConstraint:
    """How rollouts decode: ``unique`` permutations (else any K candidate SIDs), reasoning cut at
    ``max_reasoning_tokens``."""

    max_reasoning_tokens: int = 64
    unique: bool = True

    def for_prompts(self, tokenizer: Any, prompt_ids: torch.Tensor) -> RerankAnswerConstraint:
        """The constraint for a batch of (left-padded) rendered rerank prompts, generated tokens counted from
        the end of ``prompt_ids``."""
        prompts = tokenizer.batch_decode(prompt_ids, skip_special_tokens=False)
        return RerankAnswerConstraint(tokenizer, [prompt_answer_keys(p) for p in prompts], prompt_ids.shape[1],
                                      self.max_reasoning_tokens, self.unique)


def constrain_rollouts(model: Any, tokenizer: Any, max_reasoning_tokens: int = 64, unique: bool = True) -> None:
    """Make ``model.generate`` decode only well-formed rerank answers for the rerank prompts it is given:
    valid permutations, or with ``unique=False`` any K candidate SIDs."""
    unconstrained = model.generate
    rollout = RolloutConstraint(max_reasoning_tokens, unique)

    def generate(*args: Any, **kwargs: Any):
        input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        processors.append(rollout.for_prompts(tokenizer, input_ids))
        return unconstrained(*args, logits_processor=processors, **kwargs)

    model.generate = generate


def forbidden_tokens(constraint: RerankAnswerConstraint, completion_ids: torch.Tensor, live: torch.Tensor,
                     vocab_size: int) -> torch.Tensor:
    """(batch, steps, vocab) mask, True where the constraint forbade a token at a completion step. Only
    ``live`` steps (the completion up to its end) are masked; padding after it is left as it is."""
    rows, steps = completion_ids.shape
    forbidden = torch.zeros(rows, steps, vocab_size, dtype=torch.bool, device=completion_ids.device)
    restricted: list[tuple[int, int]] = []  # (row, step) whose allowed set is a short list
    allowed: list[tuple[int, int, int]] = []  # (row, step, token) in those lists
    free: list[tuple[int, int]] = []  # (row, step) in free reasoning: all but the banned ids
    live_rows = live.tolist()
    for row, tokens in enumerate(completion_ids.tolist()):
        for step, ids in enumerate(constraint.allowed_along(row, tokens)[:steps]):
            if not live_rows[row][step]:
                continue
            if ids is None:
                free.append((row, step))
            else:
                restricted.append((row, step))
                allowed.extend((row, step, token) for token in ids)
    device = completion_ids.device
    if restricted:
        r, s = torch.tensor(restricted, device=device).T
        forbidden[r, s] = True
    if allowed:
        r, s, t = torch.tensor(allowed, device=device).T
        forbidden[r, s, t] = False
    if free:
        r, s = torch.tensor(free, device=device).T
        banned = torch.tensor(constraint.banned_in_reasoning, device=device)
        forbidden[r[:, None], s[:, None], banned[None, :]] = True
    return forbidden


def masked_log_probs(logits: torch.Tensor, tokens: torch.Tensor, forbidden: torch.Tensor, temperature: float,
                     compute_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of ``tokens`` (and entropies) under softmax(logits / temperature) restricted to the
    allowed tokens: the distribution the constrained rollouts were sampled from (transformers applies the
    logits processors before temperature). Forbidden logits get exactly zero gradient."""
    # finite rather than -inf: exp() still underflows to exactly 0, and 0 * logit stays 0 in the entropy;
    # filled in place, so autograd keeps one (rows, steps, vocab) float tensor, not one per step below
    scaled = (logits.float() / temperature).masked_fill_(forbidden, torch.finfo(torch.float32).min)
    normaliser = scaled.logsumexp(dim=-1)
    logps = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - normaliser
    entropy = None
    if compute_entropy:  # H = log Z - sum_v q_v s_v
        entropy = normaliser - ((scaled - normaliser.unsqueeze(-1)).exp() * scaled).sum(dim=-1)
    return logps, entropy


class ConstrainedScoringMixin:
    """Put before ``GRPOTrainer`` in the bases: with ``rollout_constraint`` set, per-token log-probs and
    entropies (new, old and reference alike: TRL computes all three with this one method) come from the
    masked distribution the rollouts were sampled from.

    TRL's own method runs a fused LM head that returns log-probs without ever materialising logits, so
    the mask cannot be slipped in; this path calls the model's plain forward and keeps the completion
    steps' logits, (rows x completion length x vocabulary) per chunk, as TRL did before its fused head.
    The constrained path is the transformers rollout path, i.e. small models."""

    rollout_constraint: RolloutConstraint | None = None

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                           logits_to_keep: int, batch_size: int | None = None,
                                           compute_entropy: bool = False, compute_aux_loss: bool = False,
                                           **multimodal: Any):
        if self.rollout_constraint is None:
            return super()._get_per_token_logps_and_entropies(  # type: ignore[misc]
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        if any(v is not None for v in multimodal.values()):
            raise ValueError("constrained scoring handles text rerank prompts only, not multimodal inputs")
        batch_size = batch_size or input_ids.size(0)
        chunks = [self._score_chunk(model, input_ids[start:start + batch_size],
                                    attention_mask[start:start + batch_size], logits_to_keep, compute_entropy,
                                    compute_aux_loss)
                  for start in range(0, input_ids.size(0), batch_size)]
        logps, entropies, aux_losses = zip(*chunks, strict=True)
        return (torch.cat(logps), torch.cat(entropies) if compute_entropy else None,
                torch.stack(aux_losses).mean() if compute_aux_loss else None)

    def _score_chunk(self, model: Any, ids: torch.Tensor, mask: torch.Tensor, logits_to_keep: int,
                     compute_entropy: bool, compute_aux_loss: bool):
        """One chunk of rows (its logits are freed on return)."""
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self._keeps_logits(model):
            inputs["logits_to_keep"] = logits_to_keep + 1
        if compute_aux_loss:
            inputs["output_router_logits"] = True
        with self.accelerator.autocast():  # type: ignore[attr-defined]
            outputs = model(**inputs)  # fused_lm_head unset: the model's own forward, with logits
        logits = outputs.logits[:, -logits_to_keep - 1:-1]  # step t's logits predict completion token t
        completion = ids[:, -logits_to_keep:]
        live = mask[:, -logits_to_keep:].bool()  # as TRL's labels: nothing is scored past the end
        constraint = self.rollout_constraint.for_prompts(self.processing_class,  # type: ignore[union-attr,attr-defined]
                                                         ids[:, :-logits_to_keep])
        forbidden = forbidden_tokens(constraint, completion, live, logits.size(-1))
        sampled_forbidden = forbidden.gather(-1, completion.unsqueeze(-1)).squeeze(-1) & live
        if sampled_forbidden.any():
            row, step = (int(i) for i in sampled_forbidden.nonzero()[0])
            raise ValueError(f"a completion has token {int(completion[row, step])} at step {step}, which the "
                             "answer constraint forbids: its rollouts were not decoded under this constraint")
        logps, entropy = masked_log_probs(logits, completion, forbidden, self.temperature,  # type: ignore[attr-defined]
                                          compute_entropy)
        return (logps.masked_fill(~live, 0.0), None if entropy is None else entropy.masked_fill(~live, 0.0),
                outputs.aux_loss if compute_aux_loss else None)

    def _keeps_logits(self, model: Any) -> bool:
        """Whether the forward takes ``logits_to_keep`` (then only the completion steps' logits are made)."""
        base = self.accelerator.unwrap_model(model)  # type: ignore[attr-defined]
        base = base.get_base_model() if hasattr(base, "get_base_model") else base
        supports = getattr(base, "_supports_logits_to_keep", None)
        return bool(supports and supports())
