"""Stage 0: causal-LM pretraining of the ``tiny`` base model on the dataset's item text.

A freshly initialised tiny Qwen3 knows no language at all; a few epochs on item titles (and any
other item text) give it the vocabulary that stage 1 then ties to semantic IDs. Real base models
skip this stage. TRL's ``SFTTrainer`` in plain language-modelling mode with packing; resumes from
the newest checkpoint in ``out_dir``; the trained model lands in ``out_dir/model``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gr2.recipes.common import TrainingSettings, finish_stage, sft_config, train_resuming


@dataclass
class PretrainConfig:
    training: TrainingSettings = field(default_factory=lambda: TrainingSettings(
        epochs=3.0, learning_rate=2e-3, batch_size=32, max_length=128))


def pretrain_on_text(model, tokenizer, texts: list[str], out_dir: Path, config: PretrainConfig) -> dict:
    """Train ``model`` in place on ``texts`` (one document each, shuffled); returns final metrics."""
    from datasets import Dataset
    from trl import SFTTrainer

    out_dir = Path(out_dir)
    docs = [t for t in texts if t.strip()]
    random.Random(config.training.seed).shuffle(docs)
    dataset = Dataset.from_dict({"text": [d + tokenizer.eos_token for d in docs]})
    args = sft_config(out_dir, config.training, packing=True, dataset_text_field="text")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    result = train_resuming(trainer, out_dir)
    metrics = {"train_loss": result.training_loss, "steps": result.global_step, "documents": len(docs),
               "config": asdict(config)}
    return finish_stage(trainer, tokenizer, out_dir, metrics)
