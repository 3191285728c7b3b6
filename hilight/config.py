"""The recipe's ``hilight:`` section: actor, budget, solver, training and evaluation in one place.

``gr2.config.Recipe`` holds the section as a plain mapping (``gr2`` may not import ``hilight``); the
CLI checks it here when the recipe is loaded (``hilight_config``), so a typo fails at once with its
key's path (``hilight.training.lerning_rate: unknown key ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt

from data.configs import build_config
from gr2.reranker import GenerationSettings
from hilight.spans import Budget, Granularity

# every emphasis method hilight.methods builds (kept here so that loading a recipe imports no torch)
BASELINES = ("none", "random", "recency", "similarity", "cited", "prompt")
METHODS = (*BASELINES, "hilight")


@dataclass
class ActorLora:
    """PEFT LoRA on the backbone (pretrained LMs); the heads are always trained whole."""

    r: Annotated[int, Ge(1)] = 4
    alpha: Annotated[int, Ge(1)] = 8
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class ActorConfig:
    """The actor's backbone, granularity and head (``hilight.actor.EmphasisActor``)."""

    backbone: str = "stage1"  # a stage of the run (stage1, stage0, sft) or a local HF causal-LM directory
    granularity: Granularity = "items"
    window: Annotated[int, Ge(0)] = 6  # tokens granularity: +-window tokens around each chosen token
    head_hidden: Annotated[int, Ge(1)] = 256
    init_keep: Annotated[float, Gt(0), Lt(1)] = 0.2  # the head starts near this keep probability (the keep-rate target)
    lora: ActorLora | None = None  # None: the backbone is trained whole (the tiny LM)
    max_candidate_tokens: Annotated[int, Ge(1)] = 48  # a candidate line in the actor's view is cut here


@dataclass
class SolverConfig:
    """The frozen solver (``hilight.solver``): a GR2 checkpoint decoded as served, or a chat endpoint."""

    kind: Literal["gr2", "openai"] = "gr2"
    model: str = "sft"  # gr2: a stage of the run (sft, rl-conditional, stage1) or a model directory; openai: its name
    generation: GenerationSettings = field(default_factory=GenerationSettings)  # gr2: decoding as served (vllm)
    endpoint: str | None = None  # openai: base URL, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens: Annotated[int, Ge(1)] = 512  # openai: answer length
    timeout_s: float = 120.0
    concurrency: Annotated[int, Ge(1)] = 8  # openai: requests in flight


@dataclass
class HiLightTrainingConfig:
    """GRPO over emphasis masks: K masks an example, advantage = reward - the group's mean (clamped)."""

    masks_per_example: Annotated[int, Ge(2)] = 4  # K
    # how a mask is drawn: "bernoulli" (the paper's: each unit kept with its own probability, spans cut to the
    # budget) or "ranked" (a Plackett-Luce ranking of the units, Gumbel-perturbed logits, filling the budget as
    # evaluation's top decode does, so the actor trains on the amount of emphasis it is evaluated with)
    sampling: Literal["bernoulli", "ranked"] = "bernoulli"
    examples_per_step: Annotated[int, Ge(1)] = 8
    max_steps: Annotated[int, Ge(1)] = 200
    learning_rate: Annotated[float, Gt(0)] = 1e-3  # the heads
    backbone_learning_rate: Annotated[float, Ge(0)] = 1e-4  # the backbone, or its LoRA weights (0: frozen)
    keep_target: Annotated[float, Gt(0), Le(1)] = 0.2  # bernoulli: loss + keep_coef * (mean keep prob - target)^2
    keep_coef: Annotated[float, Ge(0)] = 1.0
    entropy_coef: Annotated[float, Ge(0)] = 0.01  # loss - entropy_coef * mean Bernoulli entropy
    advantage_clip: Annotated[float, Gt(0)] = 1.0
    value_coef: Annotated[float, Ge(0)] = 0.1  # the value head's regression on the group's mean reward
    max_grad_norm: Annotated[float, Gt(0)] = 1.0
    save_steps: Annotated[int, Ge(1)] = 20
    eval_steps: Annotated[int, Ge(1)] = 20  # selection on valid every eval_steps (and before the first step)
    select_users: Annotated[int, Ge(0)] = 100  # valid users (target among the candidates) for selection; 0: all
    max_examples: Annotated[int, Ge(0)] = 0  # train examples (target among the candidates); 0: all
    seed: int = 0


@dataclass
class HiLightEvalConfig:
    splits: list[Literal["valid", "test"]] = field(default_factory=lambda: ["valid", "test"])
    max_users: Annotated[int, Ge(0)] = 0  # per split, a seeded sample of users whose target is a candidate; 0: all
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    decode: Literal["top", "threshold"] = "top"  # the actor's deterministic spans (EmphasisActor.apply)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        assert not unknown, f"unknown methods {unknown}; available: {list(METHODS)}"


@dataclass
class HiLightConfig:
    actor: ActorConfig = field(default_factory=ActorConfig)
    budget: Budget = field(default_factory=Budget)
    solver: SolverConfig = field(default_factory=SolverConfig)
    training: HiLightTrainingConfig = field(default_factory=HiLightTrainingConfig)
    eval: HiLightEvalConfig = field(default_factory=HiLightEvalConfig)


def hilight_config(section: dict[str, Any] | None) -> HiLightConfig:
    """The recipe's ``hilight`` mapping, validated whole (every problem reported with its key's path)."""
    return build_config(HiLightConfig, section or {}, "hilight")
