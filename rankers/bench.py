"""``gr2 bench attention``: each attention backend's forward+backward time and a whole SASRec training step.

All backends are measured in one run, interleaved (repeat r of every backend before repeat r + 1 of any), so
load from other processes on a shared machine hits them alike. Figures are the best (minimum) of the repeats,
as ``timeit`` recommends: on a machine shared with other jobs the minimum is the least disturbed estimate of
what the code costs; medians are kept in the JSON too. Ratios are to ``naive``. Backends that cannot run on
the device are listed with the reason instead of a number.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rankers.attention import BACKENDS, _why_unavailable, causal_attention
from rankers.sasrec import SASRec, SASRecConfig


@dataclass
class BenchConfig:
    shapes: Sequence[tuple[int, int, int, int]] = ((128, 50, 2, 32), (128, 200, 2, 32), (32, 512, 2, 32))
    step_shapes: Sequence[tuple[int, int]] = ((128, 50), (128, 200))  # (batch, length) of a training step
    num_items: int = 1682  # ML-100K's catalogue for the training step's softmax
    repeats: int = 7
    warmup: int = 2
    device: str = "cpu"
    threads: int = 2
    backends: Sequence[str] = field(default_factory=lambda: list(BACKENDS))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}, {name: statistics.median(t) for name, t in times.items()}


def _attention_fn(backend: str, batch: int, length: int, heads: int, dim: int, device: torch.device):  # noqa: ANN202
    g = torch.Generator(device="cpu").manual_seed(0)
    qkv = [torch.randn(batch, heads, length, dim, generator=g).to(device).requires_grad_() for _ in range(3)]
    lengths = torch.full((batch,), length, dtype=torch.int64, device=device)
    grad = torch.randn(batch, heads, length, dim, generator=g).to(device)

    def run() -> None:
        for x in qkv:
            x.grad = None
        causal_attention(*qkv, lengths, backend).backward(grad)

    return run


def _step_fn(backend: str, batch: int, length: int, num_items: int, device: torch.device):  # noqa: ANN202
    torch.manual_seed(0)
    cfg = SASRecConfig(hidden=64, heads=2, blocks=2, max_len=length, attention=backend)
    model = SASRec(num_items, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    items = torch.from_numpy(rng.integers(1, num_items + 1, size=(batch, length))).to(device)
    targets = torch.from_numpy(rng.integers(0, num_items, size=(batch, length))).to(device)
    lengths = torch.full((batch,), length, dtype=torch.int64, device=device)

    def run() -> None:
        loss = model.loss(items, targets, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return run


def bench_attention(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """{"attention": [per shape: seconds and ratio per backend], "train_step": [...], "unavailable": {...}}."""
    device = torch.device(cfg.device)
    torch.set_num_threads(cfg.threads)
    usable = [b for b in cfg.backends if _why_unavailable(b, device) is None]
    if "naive" not in usable:
        usable.insert(0, "naive")
    result = {"device": str(device), "threads": cfg.threads, "repeats": cfg.repeats,
              "unavailable": {b: _why_unavailable(b, device) for b in cfg.backends if b not in usable},
              "attention": [], "train_step": []}
    for batch, length, heads, dim in cfg.shapes:
        if progress:
            progress(f"attention fwd+bwd batch={batch} length={length} heads={heads} head_dim={dim}")
        fns = {b: _attention_fn(b, batch, length, heads, dim, device) for b in usable}
        secs, medians = _interleaved(fns, cfg.repeats, cfg.warmup, device)
        result["attention"].append({"batch": batch, "length": length, "heads": heads, "head_dim": dim, "seconds": secs,
                                    "median_seconds": medians,
                                    "speedup_vs_naive": {b: secs["naive"] / s for b, s in secs.items()}})
    for batch, length in cfg.step_shapes:
        if progress:
            progress(f"SASRec training step batch={batch} length={length} items={cfg.num_items}")
        fns = {b: _step_fn(b, batch, length, cfg.num_items, device) for b in usable}
        secs, medians = _interleaved(fns, cfg.repeats, cfg.warmup, device)
        result["train_step"].append({"batch": batch, "length": length, "num_items": cfg.num_items,
                                     "median_seconds": medians,
                                     "seqs_per_second": {b: batch / s for b, s in secs.items()},
                                     "speedup_vs_naive": {b: secs["naive"] / s for b, s in secs.items()}})
    return result
