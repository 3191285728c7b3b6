"""Stage 1: mid-training on the multi-task SID corpus (``gr2.midtrain_corpus``).

Loads the base model (stage 0's output or any local HF causal LM), adds the SID tokens with
``tokenizer.extend_vocabulary`` (new rows initialised from the items' text embeddings), and trains
with TRL's ``SFTTrainer`` on prompt/completion conversations (loss on completions only), fully or
with LoRA. Optional later ``phases`` continue from the mixture's model on other tasks and settings:
the tiny recipe ends with a copy warm-up (``copy_sids`` at a constant lr), the one thing that taught
the 3M-parameter model to write candidate SIDs back. Resumes after a kill (a finished phase is
reloaded, the running one continues from its newest checkpoint); the model lands in ``out_dir/model``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from data.artifacts import write_json_atomic
from data.errors import DataError
from data.schema import PreparedDataset
from gr2.base_model import load_base_model
from gr2.midtrain_corpus import TASKS, MixtureConfig, build_midtrain_dataset
from gr2.recipes.common import (
    LoraSettings,
    StepTimer,
    TrainingSettings,
    finish_stage,
    save_model,
    sft_config,
    train_resuming,
)
from tokenizer.sid import SemanticIDs
from tokenizer.vocab import extend_vocabulary


@dataclass
class MidtrainPhase:
    """A later pass from the previous phase's model: only ``tasks`` (weights) are trained, on
    ``num_examples`` new examples; history and candidate sizes follow the main mixture."""

    name: str = "phase"
    tasks: dict[str, float] = field(default_factory=lambda: {"copy_sids": 1.0})
    num_examples: int = 10_000
    sequences: int = 0  # sid_sequence passes in this phase (the main mixture's are not repeated)
    training: TrainingSettings = field(default_factory=lambda: TrainingSettings(
        epochs=1.0, learning_rate=1e-3, batch_size=32, max_length=512, lr_scheduler="constant_with_warmup"))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise DataError(f"midtrain phase {self.name!r}: unknown task(s) {unknown}; tasks: {list(TASKS)}")

    def mixture(self, main: MixtureConfig) -> MixtureConfig:
        weights = {t: float(self.tasks.get(t, 0.0)) for t in TASKS}
        return dataclasses.replace(main, **weights, num_examples=self.num_examples, sequences=self.sequences)


@dataclass
class MidtrainConfig:
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    training: TrainingSettings = field(default_factory=lambda: TrainingSettings(
        epochs=1.0, learning_rate=1e-3, batch_size=16, max_length=512))
    lora: LoraSettings | None = None
    vocab_init: str = "auto"  # "text" when item texts are known, else "mean" (see tokenizer.vocab)
    vocab_noise: float = 1.0  # new rows + N(0, vocab_noise * covariance of the old rows): distinct SID tokens
    phases: list[MidtrainPhase] = field(default_factory=list)  # trained in order after the mixture
    # epochs of the mixture without a better valid score before it stops (needs a valid scorer); 0: never
    patience: int = 0
    select_users: int = 1000  # valid users (target among the candidates) scored after each epoch


ValidScore = Callable[[Any, Any], dict[str, float]]  # (model, tokenizer) -> metrics; "score" is maximised


class SelectOnValid(TrainerCallback):
    """Scores the model on valid after every epoch, keeps the best one in ``out_dir/best`` and stops after
    ``patience`` epochs without improvement: stage 1 trains for as many epochs as the valid split rewards.
    The history lives in ``selection.json``, so a resumed run keeps its best score and patience count."""

    def __init__(self, score: ValidScore, tokenizer: Any, out_dir: Path, patience: int):
        self.score, self.tokenizer, self.patience = score, tokenizer, patience
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "selection.json"
        self.history: list[dict] = json.loads(self.path.read_text())["epochs"] if self.path.is_file() else []

    @property
    def best(self) -> dict | None:
        return max(self.history, key=lambda e: e["score"]) if self.history else None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if hasattr(model, "merge_and_unload"):
            raise DataError("midtrain.patience (selection on valid) needs full fine-tuning: a LoRA model would be "
                            "merged while it trains; set midtrain.lora to null or midtrain.patience to 0")
        return control

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return control
        epoch = round(state.epoch or 0)
        if any(e["epoch"] == epoch for e in self.history):  # scored before a kill
            return control
        metrics = self.score(model, self.tokenizer)
        model.train()
        best = self.best
        self.history.append({"epoch": epoch, "step": state.global_step, **metrics})
        if best is None or metrics["score"] > best["score"]:
            save_model(model, self.tokenizer, self.out_dir / "best")
        write_json_atomic(self.path, {"epochs": self.history, "best": self.best})
        since_best = epoch - self.best["epoch"]
        print(f"stage 1 epoch {epoch}: valid {metrics}; best epoch {self.best['epoch']}", flush=True)
        if self.patience and since_best >= self.patience:
            control.should_training_stop = True
        return control


def midtrain(base_model: str | Path, ds: PreparedDataset, sids: SemanticIDs, out_dir: Path,
             config: MidtrainConfig, valid_score: ValidScore | None = None) -> dict:
    """Train the mixture (selected on ``valid_score`` after each epoch when given), then each phase."""
    out_dir = Path(out_dir)
    model, tokenizer = load_base_model(base_model)
    extension = extend_vocabulary(tokenizer, model, sids, item_texts=ds.item_texts(), init=config.vocab_init,
                                  noise=config.vocab_noise, seed=config.training.seed)
    # (name, mixture, training, directory); without phases the mixture trains in out_dir as it always did
    runs = [("mixture", config.mixture, config.training, out_dir / "phase-0-mixture" if config.phases else out_dir)]
    runs += [(p.name, p.mixture(config.mixture), p.training, out_dir / f"phase-{i}-{p.name}")
             for i, p in enumerate(config.phases, start=1)]
    done: list[dict] = []
    for index, (name, mixture, training, phase_dir) in enumerate(runs):
        last = index == len(runs) - 1
        if not last and (phase_dir / "model").exists():  # finished before a kill: continue from it
            model, tokenizer = load_base_model(phase_dir / "model")
            done.append(json.loads((phase_dir / "metrics.json").read_text()))
            continue
        selector = SelectOnValid(valid_score, tokenizer, phase_dir, config.patience) \
            if valid_score is not None and index == 0 else None
        trainer, phase_metrics = _train(model, tokenizer, ds, sids, phase_dir, name, mixture, training, config.lora,
                                        selector, extension.new_ids)
        if selector is not None and selector.best is not None:  # continue from (and keep) the best epoch
            model, tokenizer = load_base_model(phase_dir / "best")
            trainer.model = model
            phase_metrics["selection"] = {"epochs": selector.history, "best": selector.best}
        done.append(phase_metrics)
        if not last:
            finish_stage(trainer, tokenizer, phase_dir, phase_metrics)
            model, tokenizer = load_base_model(phase_dir / "model")  # merged, so a LoRA phase starts afresh
    metrics = {
        "train_loss": done[-1]["train_loss"], "steps": sum(p["steps"] for p in done),
        "examples": sum(p["examples"] for p in done),
        "tasks": {t: sum(p["tasks"].get(t, 0) for p in done) for t in sorted({t for p in done for t in p["tasks"]})},
        "phases": done,
        "vocab": {"added": extension.added, "old": extension.old_vocab_size, "new": extension.new_vocab_size,
                  "init": extension.init},
        "config": asdict(config),
    }
    return finish_stage(trainer, tokenizer, out_dir, metrics)


def model_loss_trainer():  # noqa: ANN201 - a SFTTrainer subclass (TRL imported lazily)
    """TRL's ``SFTTrainer`` with a loss that runs the output layer through the model's own head module, on the
    completion's positions only (``gr2.weighted_sft.selected_logits``).

    TRL's fused LM head multiplies the hidden states by the output layer's ``weight`` directly. With PEFT's
    trainable token rows (``lora.trainable_tokens: new``) the head is a wrapper whose new rows live in a delta
    beside that weight (tied to the embedding's), so the fused path would skip them (and it fails on the
    wrapper's missing ``bias``): the SID tokens would learn as inputs but never as outputs."""
    import torch
    from trl import SFTTrainer

    from gr2.weighted_sft import selected_logits

    class ModelLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            select = labels[:, 1:] != -100
            logits = selected_logits(model, inputs["input_ids"], inputs["attention_mask"], select, min_vocab=0)
            if logits is None or return_outputs:
                outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                labels=labels, use_cache=False)
                return (outputs.loss, outputs) if return_outputs else outputs.loss
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][select], reduction="sum")
            # the step's token count when the Trainer leaves the accumulation scaling to the loss (as HF models
            # do); otherwise this micro-batch's mean, which the Trainer divides by the accumulation steps
            if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
                return loss / torch.as_tensor(num_items_in_batch, device=loss.device)
            return loss / select.sum().clamp(min=1)

    return ModelLossSFTTrainer


def _train(model: Any, tokenizer: Any, ds: PreparedDataset, sids: SemanticIDs, out_dir: Path, name: str,
           mixture: MixtureConfig, training: TrainingSettings, lora: LoraSettings | None,
           selector: SelectOnValid | None = None, new_token_ids: list[int] | None = None) -> tuple[Any, dict]:
    from trl import SFTTrainer

    corpus = build_midtrain_dataset(ds, sids.sids(), mixture)
    trains_token_rows = lora is not None and lora.trainable_tokens == "new" and bool(new_token_ids)
    trainer = (model_loss_trainer() if trains_token_rows else SFTTrainer)(
        model=model,
        args=sft_config(out_dir, training),
        train_dataset=corpus.remove_columns("task"),
        processing_class=tokenizer,
        peft_config=lora.peft_config(new_token_ids) if lora else None,
        callbacks=[*([selector] if selector else []), timer := StepTimer()],
    )
    result = train_resuming(trainer, out_dir)
    tasks = {t: corpus["task"].count(t) for t in sorted(set(corpus["task"]))}
    return trainer, {"phase": name, "train_loss": result.training_loss, "steps": result.global_step,
                     "examples": len(corpus), "tasks": tasks, "step_seconds": timer.summary()}
