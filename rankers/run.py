"""A ranker run directory: train any model on a prepared dataset, evaluate it, reload it later.

``DIR/config.json`` says which dataset and model with which config; ``DIR/metrics.json`` has valid and test
``hr@10``, ``ndcg@10``, ``hr@50`` (full ranking) and the training wall time; ``DIR/manifest.json`` the usual
record. SASRec runs also hold ``best.pt`` and ``checkpoint.pt``; the retrievers are refitted from the config
when reloaded (seconds, deterministic), so they store no model file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from data.artifacts import write_json_atomic, write_manifest
from data.configs import build_config
from data.errors import DataError
from data.prepare import load_prepared
from data.schema import PreparedDataset
from rankers.errors import ConfigError
from rankers.evaluate import Scorer, evaluate
from rankers.retrieval import (
    ContentConfig,
    ContentRanker,
    CooccurrenceConfig,
    CooccurrenceRanker,
    PopularityConfig,
    PopularityRanker,
)
from rankers.sasrec import SASRecConfig

CONFIGS = {"pop": PopularityConfig, "cooc": CooccurrenceConfig, "content": ContentConfig, "sasrec": SASRecConfig}
MODELS = tuple(CONFIGS)


def make_config(model: str, values: dict[str, Any] | None = None, where: str | None = None):  # noqa: ANN201
    """The model's config dataclass from a dict (e.g. YAML + ``--set`` overrides), validated whole
    (``data.configs``): unknown keys, wrong types and the class's own checks are errors naming the key."""
    if model not in CONFIGS:
        raise ConfigError(f"unknown model {model!r}; available: {list(MODELS)}")
    return build_config(CONFIGS[model], values, model if where is None else where)


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError("config file not found", path)
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise DataError("a ranker config must be a YAML mapping of field: value", path)
    return values


def item_content(ds: PreparedDataset) -> np.ndarray:
    """The dataset's cached item text embeddings (``gr2 data embed``), computed now if missing."""
    from data.embeddings import embed_items

    return embed_items(ds, show_progress=False).vectors


def fit_retriever(model: str, config, ds: PreparedDataset, sequences: Sequence[np.ndarray]) -> Scorer:  # noqa: ANN001
    if model == "pop":
        return PopularityRanker(config).fit(sequences, ds.num_items)
    if model == "cooc":
        return CooccurrenceRanker(config).fit(sequences, ds.num_items)
    if model == "content":
        return ContentRanker(item_content(ds), config).fit(sequences, ds.num_items)
    raise ConfigError(f"{model!r} is not a retriever; retrievers: ['pop', 'cooc', 'content']")


def train_run(dataset: str, model: str, out: str | Path, config: dict[str, Any] | None = None,
              resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) ``model`` on ``dataset`` into run directory ``out``; returns and writes metrics."""
    cfg = make_config(model, config)
    ds = load_prepared(dataset)
    out = Path(out)
    if resume and not (out / "config.json").is_file():
        raise DataError("nothing to resume: not a ranker run directory", out)
    if not resume and (out / "metrics.json").is_file():
        raise DataError("this run directory already holds a finished run; use another --out or --resume", out)
    out.mkdir(parents=True, exist_ok=True)
    run_config = {"dataset": ds.name, "model": model, "model_config": asdict(cfg)}
    if resume:
        from rankers.train import BUDGET_FIELDS

        old = json.loads((out / "config.json").read_text())
        strip = lambda c: {**c, "model_config": {k: v for k, v in c["model_config"].items()  # noqa: E731
                                                  if k not in BUDGET_FIELDS}}
        if strip(old) != strip(run_config):
            raise DataError(f"--resume with a different dataset/model/config than the run was started with: {old}",
                            out / "config.json")
    write_json_atomic(out / "config.json", run_config)
    valid, test = ds.eval_examples("valid"), ds.eval_examples("test")
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    if model == "sasrec":
        from rankers.train import SASRecScorer, train_sasrec

        result = train_sasrec(ds.train_sequences(), ds.num_items, cfg, out, valid=valid, resume=resume,
                              progress=progress, content=item_content(ds) if cfg.content else None)
        scorer: Scorer = SASRecScorer(result.model, cfg.device)
        train_seconds = result.train_seconds
        extra = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "stopped": result.stopped,
                 "seconds_to_best": result.seconds_to_best,
                 "history": [{"epoch": h["epoch"], "loss": h["loss"],
                              **({"valid_ndcg@10": h["valid"]["ndcg@10"]} if "valid" in h else {})}
                             for h in result.history]}
    else:
        scorer = fit_retriever(model, cfg, ds, ds.train_sequences())
        train_seconds = time.perf_counter() - start
    metrics = {
        "dataset": ds.name, "model": model, "train_seconds": round(train_seconds, 2),
        "valid": evaluate(scorer, valid, progress=progress, desc="valid"),
        "test": evaluate(scorer, test, progress=progress, desc="test"),
        "protocol": "leave-one-out, full ranking over all items, the user's earlier items excluded "
                    "(except the target)",
        **extra,
    }
    write_json_atomic(out / "metrics.json", metrics)
    write_manifest(out, kind=f"ranker-{model}", config=run_config, seed=getattr(cfg, "seed", None),
                   inputs=[ds.path / "sequences.parquet", ds.path / "items.parquet"],
                   metrics={k: metrics[k] for k in ("valid", "test", "train_seconds")})
    return metrics


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError("not a ranker run directory (no config.json); train one with `gr2 rank train`", run_dir)
    return json.loads(path.read_text())
