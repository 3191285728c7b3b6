"""Stage 1: mid-training on the multi-task SID corpus (``gr2.midtrain_corpus``).

Loads the base model (stage 0's output or any local HF causal LM), adds the SID tokens with
``tokenizer.extend_vocabulary`` (new rows initialised from the items' text embeddings), and trains
with TRL's ``SFTTrainer`` on prompt/completion conversations (loss on completions only), fully or
with LoRA. Resumes after a kill; the merged model lands in ``out_dir/model``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from data.schema import PreparedDataset
from gr2.base_model import load_base_model
from gr2.midtrain_corpus import MixtureConfig, build_midtrain_dataset
from gr2.recipes.common import LoraSettings, TrainingSettings, finish_stage, sft_config, train_resuming
from tokenizer.sid import SemanticIDs
from tokenizer.vocab import extend_vocabulary


@dataclass
class MidtrainConfig:
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    training: TrainingSettings = field(default_factory=lambda: TrainingSettings(
        epochs=1.0, learning_rate=1e-3, batch_size=16, max_length=512))
    lora: LoraSettings | None = None
    vocab_init: str = "auto"  # "text" when item texts are known, else "mean" (see tokenizer.vocab)
    vocab_noise: float = 1.0  # new rows + N(0, vocab_noise * covariance of the old rows): distinct SID tokens


def midtrain(base_model: str | Path, ds: PreparedDataset, sids: SemanticIDs, out_dir: Path,
             config: MidtrainConfig) -> dict:
    from trl import SFTTrainer

    out_dir = Path(out_dir)
    model, tokenizer = load_base_model(base_model)
    extension = extend_vocabulary(tokenizer, model, sids, item_texts=ds.item_texts(), init=config.vocab_init,
                                  noise=config.vocab_noise, seed=config.training.seed)
    corpus = build_midtrain_dataset(ds, sids.sids(), config.mixture)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(out_dir, config.training),
        train_dataset=corpus.remove_columns("task"),
        processing_class=tokenizer,
        peft_config=config.lora.peft_config() if config.lora else None,
    )
    result = train_resuming(trainer, out_dir)
    metrics = {
        "train_loss": result.training_loss, "steps": result.global_step, "examples": len(corpus),
        "tasks": {t: corpus["task"].count(t) for t in sorted(set(corpus["task"]))},
        "vocab": {"added": extension.added, "old": extension.old_vocab_size, "new": extension.new_vocab_size,
                  "init": extension.init},
        "config": asdict(config),
    }
    return finish_stage(trainer, tokenizer, out_dir, metrics)
