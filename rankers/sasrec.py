"""SASRec-style sequential ranker: item embeddings, pre-LN causal transformer blocks, full-softmax loss.

Design choices and why:
- Full softmax cross-entropy over every item (gSASRec / "SASRec+"): far better than SASRec's one-negative
  BCE at the same compute, and it converges in a few epochs. Sampled softmax stays available for huge
  catalogues (``loss="sampled"``).
- Tied input/output item embeddings: halves parameters, and the rare items' output vectors get input-side
  gradients too.
- Right padding with reversed positions (position 0 = most recent item): with right padding a plain causal
  mask is exact, which lets the fused kernels (SDPA ``is_causal``, flash-attn varlen, our Triton jagged
  kernel) run without an explicit mask; reversed positions give the same "distance from the latest item"
  signal as SASRec's left padding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from data.configs import build_config
from rankers.attention import BACKENDS, causal_attention
from rankers.errors import ConfigError


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    ffn_mult: int = 2  # feed-forward width = ffn_mult * hidden
    max_len: int = 50
    dropout: float = 0.3
    attention: str = "sdpa"  # naive | sdpa | flash_attn | triton
    content: bool = False  # add a learned projection of the items' text embeddings to the ID embeddings
    loss: str = "ce"  # ce (full softmax) | sampled (sampled softmax with uniform negatives)
    num_negatives: int = 256  # for loss="sampled"
    lr: float = 2e-3
    lr_schedule: str = "constant"  # constant | cosine (decay to 5% of lr over `epochs`, after a 1-epoch warmup)
    weight_decay: float = 0.01
    batch_size: int = 64
    epochs: int = 50
    patience: int = 10  # stop after this many evaluations without a better valid NDCG@10
    eval_every: int = 1  # epochs between valid evaluations
    valid_users: int = 0  # early stopping on a fixed random subset of this many valid users (0 = all)
    window_stride: int = 0  # long training sequences are cut into max_len windows this far apart (0 = max_len)
    max_train_seconds: float = 0.0  # 0 = no time limit
    seed: int = 0
    threads: int = 2
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.attention not in BACKENDS:
            raise ConfigError(f"unknown attention backend {self.attention!r}; available: {list(BACKENDS)}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; available: ['constant', 'cosine']")
        if self.loss not in ("ce", "sampled"):
            raise ConfigError(f"unknown loss {self.loss!r}; available: ['ce', 'sampled']")
        if self.hidden % self.heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.max_len < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("max_len, batch_size and epochs must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SASRecConfig:
        """A saved config (checkpoint, config.json), validated like a config file."""
        return build_config(cls, values, "sasrec")


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, backend: str):
        super().__init__()
        self.heads, self.backend = heads, backend
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = causal_attention(q, k, v, lengths, self.backend)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg.hidden, cfg.heads, cfg.attention)
        self.ln2 = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(nn.Linear(cfg.hidden, cfg.ffn_mult * cfg.hidden), nn.GELU(),
                                 nn.Linear(cfg.ffn_mult * cfg.hidden, cfg.hidden))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), lengths))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(nn.Module):
    """Item indices are shifted by one inside the model so that 0 can be padding.

    With ``cfg.content`` an item is ``id_embedding + W @ text_embedding``: on sparse catalogues (Games: about
    26 interactions per item) the text side lets rare items borrow from similar ones, so it learns in fewer
    epochs. ``content`` (num_items, dim) is stored in the model's state, so a checkpoint is self-contained.
    """

    def __init__(self, num_items: int, cfg: SASRecConfig, content: torch.Tensor | None = None):
        super().__init__()
        self.cfg, self.num_items = cfg, num_items
        if cfg.content:
            if content is None or content.shape[0] != num_items:
                raise ConfigError(f"content=true needs a ({num_items}, dim) item text embedding matrix; "
                                  "run `gr2 data embed DATASET` first")
            table = torch.cat([torch.zeros(1, content.shape[1]), torch.as_tensor(content, dtype=torch.float32)])
            self.register_buffer("content", table)  # row 0 (padding) is zero, so it projects to zero
            self.content_proj = nn.Linear(content.shape[1], cfg.hidden, bias=False)
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks))
        self.ln = nn.LayerNorm(cfg.hidden)
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden ** -0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def set_backend(self, backend: str) -> None:
        self.cfg.attention = backend
        for block in self.blocks:
            block.attn.backend = backend

    def item_vectors(self, shifted: torch.Tensor | None = None) -> torch.Tensor:
        """Representations of items by shifted index (0 = padding); all real items when ``shifted`` is None."""
        if shifted is None:
            shifted = torch.arange(1, self.num_items + 1, device=self.item_emb.weight.device)
        x = self.item_emb(shifted)
        if self.cfg.content:
            x = x + self.content_proj(self.content[shifted])
        return x

    def encode(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``items``: (batch, length) right-padded item indices + 1 (0 = pad) -> hidden states per position."""
        length = items.shape[1]
        steps = torch.arange(length, device=items.device)[None, :]
        positions = (lengths[:, None] - 1 - steps).clamp(min=0)  # 0 = the most recent item
        x = self.item_vectors(items) * self.cfg.hidden ** 0.5 + self.pos_emb(positions)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, lengths)
        return self.ln(x)

    def item_weights(self) -> torch.Tensor:
        return self.item_vectors() if self.cfg.content else self.item_emb.weight[1:]

    def last_hidden(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.encode(items, lengths)
        return h[torch.arange(len(lengths), device=h.device), lengths - 1]

    def loss(self, items: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Next-item loss at every real position; ``targets`` are 0-based item indices, -1 at padding."""
        h = self.encode(items, lengths)
        valid = targets >= 0
        h, y = h[valid], targets[valid]
        if self.cfg.loss == "ce":
            return F.cross_entropy(h @ self.item_weights().T, y)
        negatives = torch.randint(0, self.num_items, (self.cfg.num_negatives,), device=h.device)
        pos = (h * self.item_vectors(y + 1)).sum(-1, keepdim=True)
        neg = h @ self.item_vectors(negatives + 1).T
        neg = neg.masked_fill(negatives[None, :] == y[:, None], float("-inf"))  # a sampled target is no negative
        logits = torch.cat([pos, neg], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long, device=h.device))

    @torch.no_grad()
    def score_all(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.last_hidden(items, lengths) @ self.item_weights().T
