"""The emphasis actor: a causal-LM backbone, a per-token Bernoulli head and a value head.

The backbone is the run's own tiny LM (stage 1 knows the SID tokens; trained whole) or any local
Hugging Face causal LM with LoRA (r=4 on q/v, as HiLight's authors use; e.g. the Gemma 270M student).
Its last hidden states go through ``LayerNorm -> MLP -> 1`` to a keep logit per token; a unit's logit
is its token's (granularity ``tokens``) or the mean over its item line's tokens (``items``). The value
head reads the mean history state and predicts the group's mean reward (a diagnostic: GRPO's baseline
is the group mean itself).

What the actor reads: the candidates first, then the history, one item line each. A causal backbone
lets a token attend only to what precedes it, so this order is what lets a history item's score depend
on the candidates it should explain; the solver's prompt is unaffected (spans are character ranges of
the history lines, ``hilight.spans``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data.artifacts import atomic_path, write_json_atomic
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import PromptItem, item_line
from hilight.config import ActorConfig
from hilight.spans import Budget, HistoryLayout, Span, choose_spans

CANDIDATES_HEADER = "Candidates:\n"
HISTORY_HEADER = "History (oldest first):\n"


@dataclass
class ActorInput:
    """One example as the actor reads it: token ids, and for each unit the positions of its tokens."""

    input_ids: list[int]
    units: list[list[int]]  # per unit (item line or history token), its positions in input_ids
    history: list[int]  # positions of every history token (the value head's pooling)
    layout: HistoryLayout


@dataclass
class ActorOutput:
    logits: list[torch.Tensor]  # per example, one keep logit per unit
    values: torch.Tensor  # per example, the predicted reward


class EmphasisActor(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer: Any, config: ActorConfig, source: str = ""):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config
        self.source = source  # the backbone's directory, recorded with a saved actor
        hidden = int(backbone.config.hidden_size)
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, config.head_hidden), nn.GELU(),
                                  nn.Linear(config.head_hidden, 1))
        self.value_head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 1))
        with torch.no_grad():  # start near the keep-rate target, with small differences between tokens
            self.head[-1].weight.mul_(0.1)
            self.head[-1].bias.fill_(math.log(config.init_keep / (1 - config.init_keep)))

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, model_dir: str | Path, config: ActorConfig) -> EmphasisActor:
        """The backbone of a causal LM (a directory, or a name ``load_base_model`` knows such as ``gemma3-270m``):
        its decoder without the LM head, LoRA-wrapped if asked."""
        from gr2.base_model import load_base_model

        lm, tokenizer = load_base_model(model_dir)
        backbone = lm.base_model  # the decoder stack: hidden states without the vocabulary projection
        backbone.config.use_cache = False
        if config.lora is not None:
            from peft import LoraConfig, get_peft_model

            lora = config.lora
            backbone = get_peft_model(backbone, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                           target_modules=lora.target_modules))
        source = str(Path(model_dir).resolve()) if Path(model_dir).is_dir() else str(model_dir)  # or a name
        return cls(backbone, tokenizer, config, source)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What training changes (heads, plus the backbone or its LoRA weights): all a checkpoint needs."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in self.state_dict().items() if k in names}

    def save(self, out_dir: str | Path, extra: dict | None = None) -> Path:
        """``actor.pt`` (trainable weights) + ``actor_config.json`` (config and backbone source)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "actor.pt") as tmp:
            torch.save(self.trainable_state(), tmp)
        write_json_atomic(out_dir / "actor_config.json",
                          {"config": asdict(self.config), "backbone": self.source, **(extra or {})})
        return out_dir

    @classmethod
    def load(cls, actor_dir: str | Path) -> EmphasisActor:
        from data.configs import build_config

        actor_dir = Path(actor_dir)
        meta = json.loads((actor_dir / "actor_config.json").read_text())
        actor = cls.from_backbone(meta["backbone"], build_config(ActorConfig, meta["config"], "actor"))
        state = torch.load(actor_dir / "actor.pt", map_location="cpu", weights_only=True)
        unknown = actor.load_state_dict(state, strict=False).unexpected_keys
        missing = sorted(set(actor.trainable_state()) - set(state))
        if unknown or missing:
            raise ValueError(f"{actor_dir}/actor.pt does not fit its backbone (unexpected: {unknown[:3]}, "
                             f"missing: {missing[:3]})")
        return actor.eval()

    # -- reading examples --------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prepare(self, history: Sequence[PromptItem], candidates: Sequence[PromptItem]) -> ActorInput:
        """Candidates, then the history, each line tokenized alone so each token belongs to one line."""
        newline = self._ids("\n")
        ids = self._ids(CANDIDATES_HEADER)
        for item in candidates:
            ids += self._ids(item_line(item))[: self.config.max_candidate_tokens] + newline
        ids += self._ids(HISTORY_HEADER)
        lines = [item_line(item) for item in history]
        layout = HistoryLayout.build(self.tokenizer, lines)
        items, tokens = [], []
        for line in lines:
            line_ids = self._ids(line)
            positions = list(range(len(ids), len(ids) + len(line_ids)))
            items.append(positions)
            tokens += [[p] for p in positions]
            ids += line_ids + newline
        if [len(p) for p in items] != layout.item_tokens:
            raise ValueError("the tokenizer's offsets disagree with its tokens; a fast tokenizer is needed")
        units = items if self.config.granularity == "items" else tokens
        return ActorInput(ids, units, [p for positions in items for p in positions], layout)

    def prepare_example(self, catalog: ItemCatalog, example: RerankExample) -> ActorInput:
        return self.prepare(catalog.prompt_items(example.history), catalog.prompt_items(example.candidates))

    def forward(self, inputs: Sequence[ActorInput]) -> ActorOutput:
        device = next(self.parameters()).device
        length = max(len(x.input_ids) for x in inputs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(inputs), length), pad, dtype=torch.long, device=device)
        mask = torch.zeros((len(inputs), length), dtype=torch.long, device=device)
        for row, x in enumerate(inputs):  # right padding: a causal model's real tokens never see it
            ids[row, : len(x.input_ids)] = torch.tensor(x.input_ids, device=device)
            mask[row, : len(x.input_ids)] = 1
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        token_logits = self.head(hidden).squeeze(-1)
        logits, pooled = [], []
        for row, x in enumerate(inputs):
            logits.append(torch.stack([token_logits[row, p].mean() for p in x.units]) if x.units else
                          token_logits.new_zeros(0))
            pooled.append(hidden[row, x.history].mean(0) if x.history else hidden[row, 0])
        return ActorOutput(logits, self.value_head(torch.stack(pooled)).squeeze(-1))

    # -- deciding --------------------------------------------------------------------------------------
    def spans(self, probs: np.ndarray, layout: HistoryLayout, budget: Budget, chosen: np.ndarray | None = None
              ) -> list[Span]:
        """Spans from keep probabilities: the ``chosen`` units (a sampled mask) or, without one, every unit,
        highest probability first, kept while the budget allows (``choose_spans``)."""
        order = np.argsort(-probs, kind="stable")
        if chosen is not None:
            order = order[chosen[order] > 0]
        return choose_spans(layout, order.tolist(), budget, self.config.granularity, self.config.window)

    @torch.no_grad()
    def apply(self, inputs: Sequence[ActorInput], budget: Budget, decode: str = "top",
              batch_size: int = 16) -> list[list[Span]]:
        """Deterministic spans for serving and evaluation. ``top``: the highest-probability units filling the
        budget (every method at the same budget); ``threshold``: only units with keep probability > 0.5."""
        if decode not in ("top", "threshold"):
            raise ValueError(f"decode must be 'top' or 'threshold', got {decode!r}")
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            for x, logits in zip(batch, self(batch).logits, strict=True):
                probs = torch.sigmoid(logits).float().cpu().numpy()
                chosen = (probs > 0.5).astype(np.float32) if decode == "threshold" else None
                out.append(self.spans(probs, x.layout, budget, chosen))
        self.train(was_training)
        return out
