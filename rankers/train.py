"""Training SASRec: windows of the training sequences, AdamW, early stopping on valid NDCG@10, checkpoints.

A checkpoint (``checkpoint.pt``) is written atomically after every epoch with the model, optimizer, early
stopping state and elapsed time, so ``resume=True`` continues exactly where a killed run stopped; the best
model so far is kept in ``best.pt``. Shuffling and dropout are seeded per epoch (``seed + epoch``), so a
resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from data.artifacts import atomic_path
from data.errors import DataError
from data.schema import EvalExamples
from rankers.attention import check_backend
from rankers.evaluate import evaluate
from rankers.sasrec import SASRec, SASRecConfig

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
BUDGET_FIELDS = frozenset({"epochs", "patience", "max_train_seconds"})  # may change on --resume


def make_windows(sequences: Sequence[np.ndarray], max_len: int, stride: int = 0) -> list[np.ndarray]:
    """Each training sequence as windows of up to ``max_len + 1`` items (inputs + next-item targets).

    Windows are taken from the end backwards, ``stride`` apart (default ``max_len``: every target once), so
    long histories (ML-100K's median is 65) are used whole instead of only their last ``max_len`` items.
    """
    stride = stride or max_len
    out = []
    for seq in sequences:
        for end in range(len(seq) - 1, 0, -stride):
            out.append(np.asarray(seq[max(0, end - max_len): end + 1], dtype=np.int64))
    return out


def pad_right(seqs: Sequence[np.ndarray], max_len: int, shift: int = 1, fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The last ``max_len`` items of each sequence, right-padded with ``fill``; returns (matrix, lengths)."""
    lengths = np.asarray([min(len(s), max_len) for s in seqs], dtype=np.int64)
    out = np.full((len(seqs), max(int(lengths.max()), 1)), fill, dtype=np.int64)
    for r, (s, n) in enumerate(zip(seqs, lengths, strict=True)):
        if n:
            out[r, :n] = np.asarray(s[len(s) - n:]) + shift
    return out, lengths


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            chunk_batches: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length windows: shuffle, sort by length within chunks, shuffle batches.

    Most users have short histories; random batches would pad every one to the longest in the batch.
    """
    order = rng.permutation(len(lengths))
    batches = []
    chunk = batch_size * chunk_batches
    for lo in range(0, len(order), chunk):
        part = order[lo:lo + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(windows: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    inputs, lengths = pad_right([w[:-1] for w in windows], max_len=10 ** 9)
    targets, _ = pad_right([w[1:] for w in windows], max_len=10 ** 9, shift=0, fill=-1)
    to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return to(inputs), to(targets), to(lengths)


class SASRecScorer:
    """Scores every item for a batch of histories (the ``rankers.evaluate.Scorer`` protocol)."""

    def __init__(self, model: SASRec, device: torch.device | str = "cpu"):
        self.model, self.device = model, torch.device(device)

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        items, lengths = pad_right([np.asarray(h) for h in histories], self.model.cfg.max_len)
        lengths = np.maximum(lengths, 1)  # an empty history scores from the padding embedding alone
        self.model.eval()
        to = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        scores = self.model.score_all(to(items), to(lengths))
        return scores.float().cpu().numpy()


@dataclass
class TrainResult:
    model: SASRec
    best_epoch: int
    epochs_run: int
    train_seconds: float  # wall time of training epochs and valid evaluations, summed over resumes
    seconds_to_best: float
    history: list[dict] = field(default_factory=list)
    stopped: str = ""


def learning_rate(cfg: SASRecConfig, progress: float) -> float:
    """lr at ``progress`` epochs into training (fractional): a function of the step, so resume needs no state."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if progress < 1.0:
        return cfg.lr * max(progress, 0.05)
    frac = min((progress - 1.0) / max(cfg.epochs - 1.0, 1.0), 1.0)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + np.cos(np.pi * frac)))


def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_model(path: str | Path, device: str = "cpu", attention: str | None = None) -> SASRec:
    """A trained SASRec from ``best.pt`` (or a run directory), optionally switching the attention backend."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise DataError("no trained SASRec model here (expected best.pt from `gr2 rank train --model sasrec`)", path)
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = SASRecConfig.from_dict(state["config"])
    if attention:
        cfg.attention = check_backend(attention, device)
    content = state["model"]["content"][1:] if cfg.content else None  # the real values arrive with the state
    model = SASRec(state["num_items"], cfg, content).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model


def train_sasrec(
    train_sequences: Sequence[np.ndarray],
    num_items: int,
    cfg: SASRecConfig,
    run_dir: str | Path,
    valid: EvalExamples | None = None,
    resume: bool = False,
    progress: bool = True,
    content: np.ndarray | None = None,
) -> TrainResult:
    """Train until ``cfg.epochs`` or early stopping on valid NDCG@10 (no ``valid``: run all epochs)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    check_backend(cfg.attention, device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = SASRec(num_items, cfg, None if content is None else torch.from_numpy(content)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": 0, "bad_evals": 0, "elapsed": 0.0,
             "seconds_to_best": 0.0, "history": []}
    ckpt_path = run_dir / CHECKPOINT
    if resume:
        if not ckpt_path.is_file():
            raise DataError("nothing to resume: no checkpoint in the run directory", ckpt_path)
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        changed = sorted(k for k in ckpt["config"] if ckpt["config"][k] != cfg.to_dict().get(k)
                         and k not in BUDGET_FIELDS)
        if changed:
            raise DataError(f"the checkpoint was trained with a different config (differs in {changed})", ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
    windows = make_windows(train_sequences, cfg.max_len, cfg.window_stride)
    if not windows:
        raise DataError("no training sequence has two or more items")
    window_lengths = np.asarray([len(w) for w in windows])
    if valid is not None and 0 < cfg.valid_users < len(valid):
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(valid), cfg.valid_users, replace=False))
        valid = EvalExamples(valid.users[pick], [valid.histories[i] for i in pick], valid.targets[pick])
    stopped = ""
    first = state["epoch"] + 1
    if valid is not None and state["bad_evals"] >= cfg.patience:  # resuming a run that had already stopped
        first, stopped = cfg.epochs + 1, f"early stop: no better valid NDCG@10 for {cfg.patience} evaluations"
    epoch_bar = tqdm(range(first, cfg.epochs + 1), desc="sasrec epochs", disable=not progress)
    for epoch in epoch_bar:
        start = time.perf_counter()
        torch.manual_seed(cfg.seed + epoch)
        batches = length_bucketed_batches(window_lengths, cfg.batch_size, np.random.default_rng(cfg.seed + epoch))
        model.train()
        total, steps = 0.0, 0
        for step, batch in enumerate(tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not progress)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, epoch - 1 + step / len(batches))
            items, targets, lengths = collate([windows[i] for i in batch], device)
            loss = model.loss(items, targets, lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        record = {"epoch": epoch, "loss": total / steps}
        improved = valid is None
        if valid is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            metrics = evaluate(SASRecScorer(model, device), valid)
            record["valid"] = metrics
            improved = metrics["ndcg@10"] > state["best_ndcg"]
            state["bad_evals"] = 0 if improved else state["bad_evals"] + 1
        state["elapsed"] += time.perf_counter() - start
        if improved:
            state["best_ndcg"] = record.get("valid", {}).get("ndcg@10", state["best_ndcg"])
            state["best_epoch"], state["seconds_to_best"] = epoch, state["elapsed"]
            _save({"model": model.state_dict(), "config": cfg.to_dict(), "num_items": num_items, "epoch": epoch},
                  run_dir / BEST)
        state["epoch"] = epoch
        state["history"].append(record)
        _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg.to_dict(),
               "state": state}, ckpt_path)
        epoch_bar.set_postfix(loss=f"{record['loss']:.3f}",
                              ndcg10=f"{record['valid']['ndcg@10']:.4f}" if "valid" in record else "-")
        if valid is not None and state["bad_evals"] >= cfg.patience:
            stopped = f"early stop: no better valid NDCG@10 for {cfg.patience} evaluations"
            break
        if cfg.max_train_seconds and state["elapsed"] >= cfg.max_train_seconds:
            stopped = f"time limit {cfg.max_train_seconds:.0f} s reached"
            break
    best = load_model(run_dir / BEST, cfg.device) if (run_dir / BEST).is_file() else model
    return TrainResult(best, state["best_epoch"], state["epoch"], state["elapsed"], state["seconds_to_best"],
                       state["history"], stopped or "epoch limit")
