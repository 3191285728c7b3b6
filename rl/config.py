"""Stage 3's settings (``rl.dapo`` in a recipe), light enough to validate when the recipe is loaded.

``DAPOConfig`` holds what GR2's DAPO recipe decides (``DESIGN.md``: token-level loss, clip-higher,
no KL, dynamic sampling, rollout constraint); ``grpo`` passes any other field of TRL's
``GRPOConfig`` through as it is (``scale_rewards``, ``max_grad_norm``, ``num_iterations``,
``gradient_accumulation_steps`` ...), checked against that class's own fields and types. Fields the
recipe sets itself cannot be given there: ``MANAGED_GRPO_FIELDS`` says which ``DAPOConfig`` field
sets each, or that the recipe fixes it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Lt

from data.configs import build_config
from data.errors import ConfigError
from gr2.recipes.common import LoraSettings
from rl.rewards import RewardKind

Probability = Annotated[float, Gt(0), Lt(1)]

# GRPOConfig fields that rl.dapo.grpo_config sets: the DAPOConfig field that decides each, or None when the
# DAPO recipe fixes it (loss_type "dapo", beta 0, masked truncated completions, one generation per step ...)
MANAGED_GRPO_FIELDS: dict[str, str | None] = {
    "output_dir": None, "loss_type": None, "beta": None, "mask_truncated_completions": None,
    "steps_per_generation": None, "save_strategy": None, "report_to": None, "use_cpu": None, "vllm_mode": None,
    "epsilon": "epsilon", "epsilon_high": "epsilon_high", "num_generations": "num_generations",
    "per_device_train_batch_size": "prompts_per_step", "max_completion_length": "max_completion_length",
    "temperature": "temperature", "learning_rate": "learning_rate", "max_steps": "max_steps",
    "save_steps": "save_steps", "logging_steps": "logging_steps", "seed": "seed", "bf16": "bf16",
    "use_vllm": "use_vllm", "vllm_server_host": "vllm_server_host", "vllm_server_port": "vllm_server_port",
}


@dataclass
class DAPOConfig:
    reward: RewardKind = "conditional"
    alpha: Annotated[float, Ge(0)] = 0.2  # format bonus weight
    num_generations: Annotated[int, Ge(2)] = 8  # G: completions per prompt
    prompts_per_step: Annotated[int, Ge(1)] = 4  # groups per optimizer step
    learning_rate: Annotated[float, Gt(0)] = 5e-6
    max_steps: Annotated[int, Ge(1)] = 200
    max_completion_length: Annotated[int, Ge(1)] = 320
    soft_punish_cache: Annotated[int, Ge(0)] = 64  # the last tokens before the limit are softly punished
    temperature: Annotated[float, Gt(0)] = 1.0
    epsilon: Probability = 0.2
    epsilon_high: Probability = 0.28
    dynamic_sampling: bool = True
    max_refill_rounds: Annotated[int, Ge(0)] = 4
    save_steps: Annotated[int, Ge(1)] = 50
    logging_steps: Annotated[int, Ge(1)] = 1
    seed: int = 0
    bf16: bool = False
    use_vllm: bool = False  # GPU: rollouts from a `trl vllm-serve` server (TRL's server mode)
    vllm_server_host: str = "127.0.0.1"
    vllm_server_port: Annotated[int, Ge(1)] = 8000
    # permutation: rollouts decode as valid permutations (rl.constrained_rollouts); candidates: K candidate
    # SIDs, repeats allowed, so format validity must be earned; none: free decoding
    rollout_constraint: Literal["permutation", "candidates", "none"] = "permutation"
    max_reasoning_tokens: Annotated[int, Ge(0)] = 64  # constrained rollouts cut the reasoning here
    train_reasoning: bool = True  # False: the loss skips the reasoning (through </think>); only the ranking learns
    # LoRA for the policy (None: full fine-tuning). It continues the SFT stage's adapter when that stage left one,
    # so every adapter of a run applies to stage 1's model and vLLM serves them side by side (gr2 serve --lora).
    lora: LoraSettings | None = None
    grpo: dict[str, Any] = field(default_factory=dict)  # any other GRPOConfig field, passed through

    def __post_init__(self) -> None:
        if self.use_vllm and self.rollout_constraint != "none":
            # TRL's vLLM server rollouts take no per-prompt logits processor, so the constraint would be dropped
            # and the run would train on free decoding while its config says otherwise.
            raise ValueError(f"use_vllm: true cannot apply rollout_constraint {self.rollout_constraint!r} "
                             "(TRL's vLLM rollouts decode freely). Set rollout_constraint: none to train on free "
                             "vLLM rollouts, or use_vllm: false to decode constrained rollouts with transformers.")


def dapo_config(values: dict[str, Any], seed: int = 0, reward: str | None = None, where: str = "rl.dapo") -> DAPOConfig:
    """A recipe's ``rl.dapo`` section (over the recipe's ``seed``, for one ``reward`` variant), validated whole."""
    config = build_config(DAPOConfig, {"seed": seed, **values, **({"reward": reward} if reward else {})}, where)
    config.grpo = check_grpo_fields(config.grpo, f"{where}.grpo")
    return config


def check_grpo_fields(grpo: dict[str, Any], where: str = "rl.dapo.grpo") -> dict[str, Any]:
    """``grpo`` with each value validated against the type of the ``GRPOConfig`` field it names."""
    if not grpo:
        return {}
    from pydantic import TypeAdapter, ValidationError
    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    names = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    checked, problems = {}, []
    for key, value in grpo.items():
        if key in MANAGED_GRPO_FIELDS:
            owner = MANAGED_GRPO_FIELDS[key]
            problems.append(f"{where}.{key}: set by the DAPO recipe; " + (
                f"use rl.dapo.{owner}" if owner else "fixed by GR2's DAPO settings (DESIGN.md)"))
        elif key not in names:
            problems.append(f"{where}.{key}: not a field of TRL's GRPOConfig")
        else:
            try:
                checked[key] = TypeAdapter(hints[key]).validate_python(value)
            except ValidationError as exc:
                problems.append(f"{where}.{key}: {exc.errors()[0]['msg']}, got {value!r}")
    if problems:
        raise ConfigError("\n".join(problems))
    return checked
