"""A recipe: one YAML file that configures every stage of a GR2 run (see ``configs/``).

The file maps onto nested dataclasses; an unknown or misspelt key is an error that lists the keys
that exist, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data.errors import DataError
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
    method: str = "rq-kmeans"
    options: dict[str, Any] = field(default_factory=dict)  # passed to tokenizer.fit_dataset


@dataclass
class RankerSection:
    model: str = "sasrec"
    config: str | None = None  # a rankers YAML (e.g. rankers/sasrec-ml-100k.yaml), relative to the recipe
    k: int = 10  # candidates per user: what the reranker reorders
    folds: int = 2  # cross-fitting folds for train-split candidates
    train_cuts: int = 1  # train-split examples per user (targets seq[-3], seq[-4], ...): more SFT / RL data
    options: dict[str, Any] = field(default_factory=dict)  # fields overriding the YAML (epochs, dropout, ...)


@dataclass
class TracesSection:
    teacher: str = "heuristic"  # heuristic | openai | hf
    trace: TraceConfig = field(default_factory=TraceConfig)
    heuristic: HeuristicTeacherConfig = field(default_factory=HeuristicTeacherConfig)
    max_examples: int = 2000  # train-split rerank examples offered to the teacher
    endpoint: str | None = None  # openai: base URL of an OpenAI-compatible server
    model: str | None = None  # openai: model name; hf: local model directory
    api_key_env: str = "OPENAI_API_KEY"  # openai: environment variable holding the key, if any
    llm: LLMTeacherConfig = field(default_factory=LLMTeacherConfig)


@dataclass
class RLSection:
    """Stage 3 (``rl.dapo.DAPOConfig`` fields in ``dapo``); run from the SFT model."""

    rewards: list[str] = field(default_factory=lambda: ["conditional"])  # variants the pipeline trains
    max_examples: int = 2000  # train-split rerank examples (those with the target among candidates are used)
    dapo: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSection:
    splits: list[str] = field(default_factory=lambda: ["valid", "test"])
    max_users: int = 0  # per split, a seeded sample of the users whose target is a candidate (0 = every one)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    free_decoding_rows: bool = True  # with constrained decoding, also a row per model decoded freely
    free_decoding_users: int = 0  # those rows on a seeded subset of the users (0 = the same users)
    likelihood_row: bool = True  # the stage-1 model's candidate-likelihood order as a row
    teacher_row: bool = True  # the heuristic teacher's greedy order as a row (when the recipe's teacher is heuristic)
    stage1_full_ranking: bool = True  # also rank the whole catalogue with stage 1 beside SASRec and co-occurrence
    full_ranking_users: int = 0  # stage-1 full-ranking eval: a seeded sample of each split's users (0 = all)


@dataclass
class Recipe:
    dataset: str = "ml-100k"
    seed: int = 0
    base_model: str = "tiny"  # "tiny" or a local Hugging Face model directory
    tiny_model: TinyModelConfig = field(default_factory=TinyModelConfig)
    max_history: int = 10  # most recent history items in a rerank prompt
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    ranker: RankerSection = field(default_factory=RankerSection)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    midtrain: MidtrainConfig = field(default_factory=MidtrainConfig)
    traces: TracesSection = field(default_factory=TracesSection)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    rl: RLSection = field(default_factory=RLSection)
    eval: EvalSection = field(default_factory=EvalSection)


def from_dict(cls: type, data: Any, where: str = "", base: Any = None) -> Any:
    """Build dataclass ``cls`` from nested dicts onto ``base`` (default: ``cls()``), so a partly given
    section keeps the defaults of the stage it belongs to; unknown keys are errors listing valid ones."""
    base = base if base is not None else cls()
    if data is None:
        return base
    if not isinstance(data, dict):
        raise DataError(f"{where or 'recipe'}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DataError(f"{where or 'recipe'}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    values = {key: _convert(hints[key], value, f"{where}.{key}" if where else key, getattr(base, key))
              for key, value in data.items()}
    return dataclasses.replace(base, **values)


def _convert(hint: Any, value: Any, where: str, current: Any) -> Any:
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        item = typing.get_args(option)[0] if typing.get_origin(option) is list and typing.get_args(option) else None
        if item is not None and dataclasses.is_dataclass(item):  # e.g. midtrain.phases: each entry onto defaults
            if not isinstance(value, list):
                raise DataError(f"{where}: expected a list of {item.__name__} mappings, got {type(value).__name__}")
            return [from_dict(item, entry, f"{where}[{i}]") for i, entry in enumerate(value)]
        if dataclasses.is_dataclass(option):
            return from_dict(option, value, where, current if isinstance(current, option) else None)
    if options[0] is float and isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads 5e-5 (no dot) as a string
        except ValueError:
            raise DataError(f"{where}: expected a number, got {value!r}") from None
    return value


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe YAML; ``overrides`` use dotted keys (``{"sft.training.epochs": 1}``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("recipe file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataError(f"not valid YAML: {exc}", path, None if line is None else line + 1) from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        recipe = from_dict(Recipe, data)
    except DataError as exc:
        raise DataError(exc.message, path) from None
    if recipe.ranker.config and not Path(recipe.ranker.config).is_absolute():
        recipe.ranker.config = str((path.parent / recipe.ranker.config).resolve())
    return recipe


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)
