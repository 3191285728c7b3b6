"""Stage 2: SFT on teacher traces with GR2's token weights and emphasis-tagged prompts.

Each accepted trace becomes one conversation: the rerank prompt and the teacher's answer, loss on
the answer only, reasoning tokens weighted lambda_r and ranking tokens lambda_o
(``gr2.weighted_sft``). A seeded share of prompts wraps the history items the trace cites as
evidence in ``<start_important>``/``<end_important>``, so the model learns what emphasis means and
can later serve as HiLight's tag-aware solver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from annotated_types import Ge, Le

from gr2.base_model import load_base_model
from gr2.recipes.common import LoraSettings, StepTimer, TrainingSettings, finish_stage, sft_config, train_resuming
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import THINK_CLOSE, THINK_OPEN
from gr2.weighted_sft import LossWeights, WeightedCompletionCollator, WeightedSFTTrainer, encode_weighted_example


@dataclass
class SFTStageConfig:
    training: TrainingSettings = field(default_factory=lambda: TrainingSettings(
        epochs=2.0, learning_rate=5e-4, batch_size=8, max_length=1024))
    weights: LossWeights = field(default_factory=LossWeights)
    emphasis_share: Annotated[float, Ge(0), Le(1)] = 0.3  # share of prompts with the cited evidence emphasised
    lora: LoraSettings | None = None
    # false: the answers are trained without their reasoning (``<think></think>`` then the ranking), for a model
    # too small to write the teacher's reasoning: garbled reasoning then steers its ranking (``gr2 eval
    # diagnose``); the recipe's generation settings must close the reasoning at once (max_reasoning_tokens: 0)
    reasoning: bool = True


def without_reasoning(answer: str) -> str:
    """The answer with its reasoning emptied: ``<think></think>`` and the ranking as the teacher wrote it."""
    _, close, ranking = answer.rpartition(THINK_CLOSE)
    return f"{THINK_OPEN}{THINK_CLOSE}{ranking}" if close else answer


def encode_traces(traces: list[dict], catalog: ItemCatalog, tokenizer, config: SFTStageConfig) -> list[dict]:
    """Tokenized, weighted SFT rows; which prompts get emphasis is fixed by the seed."""
    rng = np.random.default_rng(config.training.seed)
    rows = []
    for number, trace in enumerate(traces, start=1):
        example = RerankExample(trace["user"], trace["history"], trace["candidates"], trace["target"], trace["split"])
        emphasised = trace["evidence"] if trace["evidence"] and rng.random() < config.emphasis_share else []
        messages = catalog.messages(example, emphasized_history=emphasised)
        try:
            answer = trace["answer"] if config.reasoning else without_reasoning(trace["answer"])
            row = encode_weighted_example(tokenizer, messages, answer, config.weights, config.training.max_length)
        except ValueError as error:  # say which trace, and which setting fixes it
            raise ValueError(f"trace {number} (user {trace['user']}): {error}; raise sft.training.max_length "
                             "or shorten the history (max_history)") from error
        row["emphasised"] = bool(emphasised)
        rows.append(row)
    return rows


def sft(model_dir: str | Path, traces: list[dict], catalog: ItemCatalog, out_dir: Path,
        config: SFTStageConfig) -> dict:
    from datasets import Dataset

    if not traces:
        raise ValueError("no traces to train on (was the acceptance rate zero?)")
    out_dir = Path(out_dir)
    model, tokenizer = load_base_model(model_dir)
    rows = encode_traces(traces, catalog, tokenizer, config)
    dataset = Dataset.from_list([{k: r[k] for k in ("input_ids", "labels", "loss_weights")} for r in rows])
    trainer = WeightedSFTTrainer(
        model=model,
        args=sft_config(out_dir, config.training, remove_unused_columns=False),
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=WeightedCompletionCollator(tokenizer.pad_token_id),
        peft_config=config.lora.peft_config() if config.lora else None,
        callbacks=[timer := StepTimer()],
    )
    result = train_resuming(trainer, out_dir)
    lengths = [len(r["input_ids"]) for r in rows]
    metrics = {
        "train_loss": result.training_loss, "steps": result.global_step, "traces": len(rows),
        "emphasised": sum(r["emphasised"] for r in rows), "mean_tokens": float(np.mean(lengths)),
        "max_tokens": int(max(lengths)), "world_size": trainer.args.world_size, "step_seconds": timer.summary(),
        "config": asdict(config),
    }
    return finish_stage(trainer, tokenizer, out_dir, metrics)
