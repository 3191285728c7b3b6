"""Stage 0: causal-LM pretraining of the ``tiny`` base model on the dataset's item text.

A freshly initialised tiny Qwen3 knows no language at all; a few epochs on item titles (and any
other item text) give it the vocabulary that stage 1 then ties to semantic IDs. Real base models
skip this stage. Built on TRL's ``SFTTrainer`` in plain language-modelling mode with packing;
checkpoints every ``save_steps`` and resumes from the newest checkpoint in ``out_dir``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from data.artifacts import write_json_atomic


@dataclass
class PretrainConfig:
    epochs: float = 3.0
    learning_rate: float = 2e-3
    batch_size: int = 32
    max_length: int = 128  # tokens per packed sequence
    warmup_ratio: float = 0.05
    save_steps: int = 200
    logging_steps: int = 20
    seed: int = 0
    max_steps: int = -1  # > 0 overrides epochs (tests, smoke runs)


def latest_checkpoint(out_dir: Path) -> str | None:
    checkpoints = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def pretrain_on_text(model, tokenizer, texts: list[str], out_dir: Path, config: PretrainConfig) -> dict:
    """Train ``model`` in place on ``texts`` (one document each, shuffled); returns final metrics."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir)
    docs = [t for t in texts if t.strip()]
    random.Random(config.seed).shuffle(docs)
    dataset = Dataset.from_dict({"text": [d + tokenizer.eos_token for d in docs]})
    args = SFTConfig(
        output_dir=str(out_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        per_device_train_batch_size=config.batch_size,
        max_length=config.max_length,
        packing=True,
        dataset_text_field="text",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
        use_cpu=True if not _cuda() else False,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train(resume_from_checkpoint=latest_checkpoint(out_dir))
    metrics = {"train_loss": result.training_loss, "steps": result.global_step, "documents": len(docs),
               "config": asdict(config)}
    write_json_atomic(out_dir / "pretrain_metrics.json", metrics)
    return metrics


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
