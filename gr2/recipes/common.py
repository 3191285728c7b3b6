"""What the training stages share: settings, TRL config, resume, atomic model saves, LoRA.

Each stage (pretrain, midtrain, sft) is one readable recipe built on TRL's ``SFTTrainer``; this
module holds the parts they would otherwise each repeat.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Lt
from transformers import TrainerCallback

from data.artifacts import atomic_path, write_json_atomic


@dataclass
class TrainingSettings:
    epochs: Annotated[float, Gt(0)] = 1.0
    learning_rate: Annotated[float, Gt(0)] = 1e-3
    batch_size: Annotated[int, Ge(1)] = 16
    gradient_accumulation_steps: Annotated[int, Ge(1)] = 1
    max_length: Annotated[int, Ge(1)] = 1024
    warmup_ratio: Annotated[float, Ge(0), Lt(1)] = 0.05
    weight_decay: Annotated[float, Ge(0)] = 0.0
    save_steps: Annotated[int, Ge(1)] = 200
    logging_steps: Annotated[int, Ge(1)] = 20
    seed: int = 0
    max_steps: int = -1  # > 0 overrides epochs (smoke runs, tests)
    bf16: bool = False  # GPU configs
    # "group_by_length": batches of similar length (less padding when short and long tasks mix)
    sampling: Literal["random", "group_by_length"] = "random"
    lr_scheduler: str = "cosine"  # any transformers scheduler name, e.g. constant_with_warmup


@dataclass
class LoraSettings:
    """PEFT LoRA; ``None`` in a recipe means full fine-tuning."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    # New SID tokens must learn their embeddings, which LoRA on linear layers alone cannot do: either the
    # whole embedding and head train (modules_to_save, fine for a small vocabulary) or only the rows of the
    # tokens the stage added (trainable_tokens: new; PEFT's trainable_token_indices), for a large one such as
    # Gemma's 262k rows.
    modules_to_save: list[str] = field(default_factory=lambda: ["embed_tokens", "lm_head"])
    trainable_tokens: Literal["none", "new"] = "none"

    def __post_init__(self) -> None:
        if self.trainable_tokens == "new" and {"embed_tokens", "lm_head"} & set(self.modules_to_save):
            raise ValueError("lora.trainable_tokens: new trains only the new tokens' rows; drop embed_tokens and "
                             "lm_head from lora.modules_to_save (which would train every row)")

    def peft_config(self, new_token_ids: list[int] | None = None) -> Any:
        """PEFT's config; ``new_token_ids`` are the rows ``trainable_tokens: new`` trains (in the input embedding,
        and through the tie in the output head)."""
        from peft import LoraConfig

        tokens = {}
        if self.trainable_tokens == "new" and new_token_ids:
            tokens = {"trainable_token_indices": {"embed_tokens": sorted(new_token_ids)}}
        # ensure_weight_tying keeps a tied input/output embedding tied while both are trained and merged.
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, modules_to_save=self.modules_to_save or None,
                          ensure_weight_tying=True, task_type="CAUSAL_LM", **tokens)

    @staticmethod
    def servable(model: Any) -> bool:
        """Whether ``model``'s adapter is plain LoRA on linear layers, which vLLM can serve by name: an adapter
        that also trains token rows or whole modules changes the vocabulary's weights, so only its merged model
        serves."""
        config = getattr(model, "peft_config", {}).get("default")
        return config is not None and not config.modules_to_save and not config.trainable_token_indices


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def sft_config(out_dir: Path, settings: TrainingSettings, **extra: Any) -> Any:
    """TRL ``SFTConfig`` for one stage: checkpoints in ``out_dir``, no external loggers."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=settings.logging_steps,
        report_to=[],
        seed=settings.seed,
        bf16=settings.bf16,
        train_sampling_strategy=settings.sampling,
        use_cpu=not cuda_available(),
        dataloader_num_workers=0,
        **extra,
    )


class StepTimer(TrainerCallback):
    """A Trainer callback timing each optimizer step (rollouts, forward, backward, update): the cost a stage
    reports in its metrics (``step_seconds``), the figure that sizes a recipe to its time budget."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start: float | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._start = time.perf_counter()
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = None
        return control

    def summary(self) -> dict[str, float | int]:
        """Mean and median seconds per step over the steps this process ran (a resumed run: its new ones)."""
        if not self.seconds:
            return {"steps_timed": 0}
        ordered = sorted(self.seconds)
        return {"steps_timed": len(ordered), "mean": round(sum(ordered) / len(ordered), 2),
                "median": round(ordered[len(ordered) // 2], 2), "total": round(sum(ordered), 1)}


def latest_checkpoint(out_dir: Path) -> str | None:
    checkpoints = sorted(Path(out_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def train_resuming(trainer: Any, out_dir: Path) -> Any:
    """Train, resuming from the newest checkpoint in ``out_dir`` when a previous run was killed."""
    return trainer.train(resume_from_checkpoint=latest_checkpoint(out_dir))


def save_model(model: Any, tokenizer: Any, path: Path) -> Path:
    """Save a (merged, if LoRA) model with its tokenizer as one directory, atomically."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return path


def save_adapter(model: Any, tokenizer: Any, path: Path) -> Path | None:
    """Save a plain LoRA adapter (with the tokenizer, so it loads on its own) before the model is merged;
    ``None`` for a model without one or whose adapter vLLM could not serve (``LoraSettings.servable``)."""
    if not LoraSettings.servable(model):
        return None
    with atomic_path(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config_file = tmp / "adapter_config.json"  # an absolute base path: the adapter loads from anywhere
        config = json.loads(config_file.read_text())
        if config.get("base_model_name_or_path") and Path(config["base_model_name_or_path"]).exists():
            config["base_model_name_or_path"] = str(Path(config["base_model_name_or_path"]).resolve())
            config_file.write_text(json.dumps(config, indent=2))
    return path


def is_main_process() -> bool:
    """True outside distributed runs and on rank 0 of an ``accelerate launch``.

    The state is built with ``cpu=True`` on machines without CUDA, exactly as the Trainer builds it
    (``use_cpu``): only then do torchrun's ranks become gloo CPU ranks instead of two "rank 0"s.
    """
    from accelerate import PartialState

    return PartialState(cpu=not cuda_available()).is_main_process


def finish_stage(trainer: Any, tokenizer: Any, out_dir: Path, metrics: dict) -> dict:
    """Write the stage's model (merged) and metrics once (main process), and a plain LoRA adapter beside the
    model (``out_dir/adapter``) when the stage trained one; the other ranks wait for it."""
    if trainer.accelerator.is_main_process:
        if save_adapter(trainer.model, tokenizer, Path(out_dir) / "adapter") is not None:
            metrics = {**metrics, "adapter": str(Path(out_dir) / "adapter")}
        save_model(trainer.model, tokenizer, Path(out_dir) / "model")
        write_json_atomic(Path(out_dir) / "metrics.json", metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
