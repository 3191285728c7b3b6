"""The recommend cascade: retrieval -> the run's ranker (SASRec) -> top-K for the GR2 reranker.

A cheap retriever (co-occurrence by default) narrows the catalogue to ``retrieve_n`` items, the
run's trained ranker orders that pool, and its top K go to the reranker in the ranker's order,
exactly the shape of the candidate lists the reranker was trained on (``ranker.k`` of the recipe).
The user's earlier items are excluded at every step, as in the offline evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.schema import PreparedDataset
from rankers.evaluate import Scorer, top_k

RETRIEVERS = ("cooc", "pop", "content", "none")


@dataclass
class CascadeSettings:
    retriever: str = "cooc"  # pop | cooc | content | none (the ranker scores the whole catalogue)
    retrieve_n: int = 200  # items the retriever hands to the ranker
    k: int = 10  # candidates the reranker sees (the recipe's ranker.k: what it was trained on)
    max_history: int = 10  # most recent history items in the rerank prompt (the recipe's max_history)


@dataclass
class Candidates:
    items: list[int]  # item indices, the ranker's order
    scores: list[float]  # the ranker's scores
    retrieved: int  # size of the pool the ranker ordered


class Cascade:
    def __init__(self, ds: PreparedDataset, ranker: Scorer, retriever: Scorer | None,
                 settings: CascadeSettings | None = None, ranker_name: str = "ranker"):
        self.ds, self.ranker, self.retriever = ds, ranker, retriever
        self.settings = settings or CascadeSettings()
        self.ranker_name = ranker_name
        self.user_index = {u: i for i, u in enumerate(ds.user_ids)}

    @classmethod
    def from_run(cls, ranker_dir: str | Path, ds: PreparedDataset, settings: CascadeSettings | None = None) -> Cascade:
        """The ranker a pipeline run trained (``RUN/ranker``) plus a retriever fitted on the training split."""
        from rankers.run import fit_retriever, make_config, read_run_config

        settings = settings or CascadeSettings()
        if settings.retriever not in RETRIEVERS:
            raise DataError(f"unknown retriever {settings.retriever!r}; available: {list(RETRIEVERS)}")
        run_config = read_run_config(ranker_dir)
        model = run_config["model"]
        cfg = make_config(model, run_config["model_config"])
        if model == "sasrec":
            from rankers.train import SASRecScorer, load_model

            ranker: Scorer = SASRecScorer(load_model(ranker_dir, "cpu"), "cpu")
        else:
            ranker = fit_retriever(model, cfg, ds, ds.train_sequences())
        retriever = None
        if settings.retriever != "none":
            retriever = fit_retriever(settings.retriever, make_config(settings.retriever), ds, ds.train_sequences())
        return cls(ds, ranker, retriever, settings, ranker_name=model)

    def history_of(self, user_id: str) -> np.ndarray | None:
        """Everything the dataset knows about the user, oldest first (None for an unknown user)."""
        u = self.user_index.get(user_id)
        return None if u is None else np.asarray(self.ds.sequences[u], dtype=np.int64)

    def candidates(self, history: np.ndarray, k: int) -> Candidates:
        """The ranker's top ``k`` of the retrieved pool, the history excluded (fewer if the pool is smaller)."""
        history = np.asarray(history, dtype=np.int64)
        n = self.ds.num_items
        allowed = np.ones(n, dtype=bool)
        allowed[history] = False
        if self.retriever is not None:
            pool_size = min(self.settings.retrieve_n, int(allowed.sum()))
            if pool_size == 0:
                return Candidates([], [], 0)
            pool, _ = top_k(self.retriever.score([history]), pool_size, exclude=[history])
            allowed[:] = False
            allowed[pool[0]] = True
        scores = self.ranker.score([history])[0].astype(np.float32)
        scores[~allowed] = -np.inf
        k = min(k, int(allowed.sum()))
        if k == 0:
            return Candidates([], [], 0)
        items, values = top_k(scores[None, :], k)
        keep = np.isfinite(values[0])  # a ranker may score some pool items -inf (e.g. content without a match)
        return Candidates(items[0][keep].tolist(), values[0][keep].astype(float).tolist(), int(allowed.sum()))
