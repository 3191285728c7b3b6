"""What the training stages share: settings, TRL config, resume, atomic model saves, LoRA.

Each stage (pretrain, midtrain, sft) is one readable recipe built on TRL's ``SFTTrainer``; this
module holds the parts they would otherwise each repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Lt

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
    # New SID tokens must learn their embeddings, which LoRA on linear layers alone cannot do.
    modules_to_save: list[str] = field(default_factory=lambda: ["embed_tokens", "lm_head"])

    def peft_config(self) -> Any:
        from peft import LoraConfig

        # ensure_weight_tying keeps a tied input/output embedding tied while both are trained and merged.
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, modules_to_save=self.modules_to_save,
                          ensure_weight_tying=True, task_type="CAUSAL_LM")


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


def is_main_process() -> bool:
    """True outside distributed runs and on rank 0 of an ``accelerate launch``.

    The state is built with ``cpu=True`` on machines without CUDA, exactly as the Trainer builds it
    (``use_cpu``): only then do torchrun's ranks become gloo CPU ranks instead of two "rank 0"s.
    """
    from accelerate import PartialState

    return PartialState(cpu=not cuda_available()).is_main_process


def finish_stage(trainer: Any, tokenizer: Any, out_dir: Path, metrics: dict) -> dict:
    """Write the stage's model and metrics once (main process); the other ranks wait for it."""
    if trainer.accelerator.is_main_process:
        save_model(trainer.model, tokenizer, Path(out_dir) / "model")
        write_json_atomic(Path(out_dir) / "metrics.json", metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
