"""Per-user top-K candidate files for the reranker, with each split's candidate recall.

- valid (history ``seq[:-2]``, target ``seq[-2]``) and test (``seq[:-1]``, ``seq[-1]``) come from the run's
  model, which trained on ``seq[:-2]`` only, so it never saw those targets.
- train (history ``seq[:-c]``, target ``seq[-c]`` for ``c`` = 3 .. 2 + ``train_cuts``, the last training
  items; several cuts per user give the reranker more examples to learn from): the run's model *did* train on
  those targets, and a reranker trained on its lists would learn that the pre-ranker is always right. So the
  train split is **cross-fitted over users**: users are split into ``folds`` groups (seeded); for group f a
  model is trained on everyone's training sequences except that group f's users lose their last
  ``train_cuts`` training items, and it writes group f's candidates. Each model sees almost all the data
  (the lists look like the real ones), yet none has seen the targets it ranks. SASRec fold models train
  for the main run's best epoch count (no valid-based early stopping needed); the retrievers are simply refitted.

Files: see ``data.candidates`` (schema, reader). Everything is written into ``RUN_DIR/candidates`` at once.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from data.artifacts import atomic_path, write_json_atomic, write_manifest
from data.candidates import CROSSFIT_SEED, candidates_dir, fold_of_users, fold_train_sequences
from data.prepare import load_prepared
from data.schema import EvalExamples, PreparedDataset
from evals.metrics import ranks_from_scores
from rankers.evaluate import Scorer, top_k
from rankers.run import fit_retriever, make_config, read_run_config


def split_examples(ds: PreparedDataset, split: str, train_cuts: int = 1) -> EvalExamples:
    """valid / test as ``ds.eval_examples``; train: history ``seq[:-c]``, target ``seq[-c]`` for
    ``c = 3 .. 2 + train_cuts`` (each cut needs at least one history item), ordered by user, then cut."""
    if split != "train":
        return ds.eval_examples(split)
    users, histories, targets = [], [], []
    for u, s in enumerate(ds.sequences):
        for cut in range(3, 3 + train_cuts):
            if len(s) > cut:
                users.append(u)
                histories.append(s[:-cut])
                targets.append(s[-cut])
    return EvalExamples(np.asarray(users, dtype=np.int64), histories, np.asarray(targets, dtype=np.int64))


def candidate_rows(scorer: Scorer, examples: EvalExamples, k: int, batch_size: int = 1024,
                   progress: bool = False, desc: str = "") -> dict[str, Any]:
    cands, scores, ranks = [], [], []
    for lo in tqdm(range(0, len(examples), batch_size), desc=desc, disable=not progress, leave=False):
        hist = examples.histories[lo:lo + batch_size]
        s = scorer.score(hist)
        c, v = top_k(s, k, exclude=hist)
        cands.append(c)
        scores.append(v)
        ranks.append(ranks_from_scores(s, examples.targets[lo:lo + batch_size], exclude=hist))
    return {"candidates": np.concatenate(cands), "scores": np.concatenate(scores), "target_rank": np.concatenate(ranks)}


def _table(ds: PreparedDataset, ex: EvalExamples, rows: dict[str, Any]) -> pa.Table:
    k = rows["candidates"].shape[1]
    return pa.table({
        "user": pa.array(ex.users, pa.int64()),
        "user_id": pa.array([ds.user_ids[u] for u in ex.users], pa.string()),
        "target": pa.array(ex.targets, pa.int64()),
        "history_len": pa.array([len(h) for h in ex.histories], pa.int32()),
        "cut": pa.array([len(ds.sequences[u]) - len(h) for u, h in zip(ex.users, ex.histories, strict=True)],
                        pa.int8()),
        "candidates": pa.FixedSizeListArray.from_arrays(pa.array(rows["candidates"].ravel(), pa.int64()), k)
        .cast(pa.list_(pa.int64())),
        "scores": pa.FixedSizeListArray.from_arrays(pa.array(rows["scores"].ravel(), pa.float32()), k)
        .cast(pa.list_(pa.float32())),
        "target_rank": pa.array(rows["target_rank"], pa.int64()),
    })


def _main_scorer(run_dir: Path, run_config: dict, ds: PreparedDataset) -> Scorer:
    model, cfg = run_config["model"], make_config(run_config["model"], run_config["model_config"])
    if model == "sasrec":
        from rankers.train import SASRecScorer, load_model

        return SASRecScorer(load_model(run_dir, cfg.device), cfg.device)
    return fit_retriever(model, cfg, ds, ds.train_sequences())


def _fold_scorer(run_dir: Path, run_config: dict, ds: PreparedDataset, held_out: np.ndarray, fold: int,
                 train_cuts: int, progress: bool) -> Scorer:
    """A model trained without the held-out users' last ``train_cuts`` training items (their train-split targets)."""
    sequences = fold_train_sequences(ds.sequences, held_out, train_cuts)
    model, cfg = run_config["model"], make_config(run_config["model"], run_config["model_config"])
    if model != "sasrec":
        return fit_retriever(model, cfg, ds, sequences)
    import json

    from rankers.run import item_content
    from rankers.train import SASRecScorer, load_model, train_sasrec

    fold_dir = run_dir / "crossfit" / (f"fold{fold}" if train_cuts == 1 else f"fold{fold}-cuts{train_cuts}")
    best_epoch = json.loads((run_dir / "metrics.json").read_text())["best_epoch"]
    fold_cfg = replace(cfg, epochs=max(1, best_epoch), seed=cfg.seed + 1000 * (fold + 1), max_train_seconds=0.0)
    if (fold_dir / "best.pt").is_file() and (fold_dir / "done").is_file():
        return SASRecScorer(load_model(fold_dir, cfg.device), cfg.device)
    resume = (fold_dir / "checkpoint.pt").is_file()
    result = train_sasrec(sequences, ds.num_items, fold_cfg, fold_dir, valid=None, resume=resume, progress=progress,
                          content=item_content(ds) if cfg.content else None)
    (fold_dir / "done").write_text("trained\n")
    return SASRecScorer(result.model, cfg.device)


def generate_candidates(run_dir: str | Path, k: int = 10, folds: int = 2, train_cuts: int = 1, batch_size: int = 1024,
                        progress: bool = True) -> dict[str, Any]:
    """Write ``RUN_DIR/candidates/{train,valid,test}.parquet`` and ``summary.json``; returns the summary."""
    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    if run_config["model"] == "sasrec" and not (run_dir / "metrics.json").is_file():
        from data.errors import DataError

        raise DataError("the SASRec run has not finished training (no metrics.json); finish it with --resume", run_dir)
    if folds < 2:
        from rankers.errors import ConfigError

        raise ConfigError(f"cross-fitting needs at least 2 folds, got {folds}")
    ds = load_prepared(run_config["dataset"])
    start = time.perf_counter()
    summary: dict[str, Any] = {
        "run": str(run_dir), "dataset": ds.name, "model": run_config["model"], "k": k, "train_cuts": train_cuts,
        "train_split": f"{folds}-fold cross-fitting over users, {train_cuts} cut(s) per user: each fold's train-split "
                       "candidates come from a model trained without those users' train-split targets",
        "recall": {}, "users": {},
    }
    tables = {}
    main = _main_scorer(run_dir, run_config, ds)
    for split in ("valid", "test"):
        ex = split_examples(ds, split)
        rows = candidate_rows(main, ex, k, batch_size, progress, desc=f"{split} candidates")
        tables[split] = _table(ds, ex, rows)
    if train_cuts < 1:
        from rankers.errors import ConfigError

        raise ConfigError(f"train_cuts must be at least 1, got {train_cuts}")
    ex = split_examples(ds, "train", train_cuts)
    fold_of = fold_of_users(ds.num_users, folds, seed=CROSSFIT_SEED)
    parts = []
    for fold in range(folds):
        held_out = fold_of == fold
        scorer = _fold_scorer(run_dir, run_config, ds, held_out, fold, train_cuts, progress)
        mine = np.flatnonzero(held_out[ex.users])
        sub = EvalExamples(ex.users[mine], [ex.histories[i] for i in mine], ex.targets[mine])
        parts.append((sub, candidate_rows(scorer, sub, k, batch_size, progress, desc=f"train candidates fold {fold}")))
    users = np.concatenate([sub.users for sub, _ in parts])
    order = np.argsort(users, kind="stable")  # back to user order (cuts stay in order within a user)
    histories = [h for sub, _ in parts for h in sub.histories]
    merged_ex = EvalExamples(users[order], [histories[i] for i in order],
                             np.concatenate([sub.targets for sub, _ in parts])[order])
    merged_rows = {key: np.concatenate([rows[key] for _, rows in parts])[order] for key in parts[0][1]}
    tables["train"] = _table(ds, merged_ex, merged_rows)
    for split, table in tables.items():
        ranks = table.column("target_rank").to_numpy()
        summary["recall"][split] = float(np.mean(ranks <= k)) if len(ranks) else 0.0
        summary["users"][split] = len(set(table.column("user").to_pylist()))
        summary.setdefault("rows", {})[split] = len(ranks)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    target = candidates_dir(run_dir)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        for split, table in tables.items():
            pq.write_table(table, tmp / f"{split}.parquet")
        write_json_atomic(tmp / "summary.json", summary)
        config = {"run": str(run_dir), "k": k, "folds": folds, "train_cuts": train_cuts}
        write_manifest(tmp, kind="candidates", config=config, seed=CROSSFIT_SEED,
                       inputs=[run_dir / "config.json", ds.path / "sequences.parquet"], metrics=summary["recall"])
    return summary
