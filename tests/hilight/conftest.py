"""HiLight on small real data: ML-100K users, the session's tiny SID model as actor backbone and as the
frozen solver (decoded greedily under the permutation constraint with ``transformers``, as the vLLM
engine decodes; an untrained model's answers still move when tags are added, which is all these
tests need of it)."""

from __future__ import annotations

import numpy as np
import pytest

from gr2.rerank_data import RerankExample
from gr2.reranker import GenerationSettings

SOLVER_SETTINGS = GenerationSettings(max_new_tokens=64, batch_size=48, max_reasoning_tokens=4, backend="hf")


def split_examples(ds, split: str, users: range, seed: int) -> list[RerankExample]:
    """Leave-one-out examples of ``split`` (train: target seq[-3]) with 10 random candidates, the target among
    them at a random position."""
    cut = {"train": 3, "valid": 2, "test": 1}[split]
    rng = np.random.default_rng(seed)
    out = []
    for user in users:
        seq = ds.sequences[user]
        target, history = int(seq[-cut]), seq[:-cut][-10:].tolist()
        pool = np.setdiff1d(np.arange(ds.num_items), seq)
        candidates = rng.choice(pool, size=10, replace=False).tolist()
        candidates[int(rng.integers(10))] = target
        out.append(RerankExample(user, history, candidates, target, split))
    return out


@pytest.fixture(scope="session")
def hl_train(ml100k):
    return split_examples(ml100k, "train", range(0, 48), seed=0)


@pytest.fixture(scope="session")
def hl_valid(ml100k):
    return split_examples(ml100k, "valid", range(100, 116), seed=1)


@pytest.fixture(scope="session")
def tiny_solver(tiny_sid_model, ml100k_catalog):
    """The real tiny model as a frozen GR2 solver (HF backend), answers cached by prompt."""
    from hilight.solver import CachedSolver, GR2Solver

    return CachedSolver(GR2Solver(tiny_sid_model, ml100k_catalog, SOLVER_SETTINGS))


# -- a run directory for the CLI and the server: the layout a pipeline writes, on 60-user candidate files --------
HILIGHT_SETS = {
    "hilight.solver.generation": "{backend: hf, max_new_tokens: 64, batch_size: 48, max_reasoning_tokens: 0}",
    "hilight.training": "{max_steps: 2, examples_per_step: 4, eval_steps: 2, save_steps: 2, select_users: 8}",
    "hilight.eval.max_users": 12,
}
SETS = [arg for key, value in HILIGHT_SETS.items() for arg in ("--set", f"{key}={value}")]


def write_candidates(ds, run, split: str, users: range, seed: int) -> float:
    """``RUN/ranker/candidates/SPLIT.parquet`` in the pre-ranker's schema; every 6th target is not a candidate."""
    import pandas as pd

    rows = []
    for n, ex in enumerate(split_examples(ds, split, users, seed)):
        candidates = list(ex.candidates)
        if n % 6 == 5:
            pool = np.setdiff1d(np.arange(ds.num_items), np.concatenate([ds.sequences[ex.user], candidates]))
            candidates[ex.target_index] = int(pool[n])
        cut = {"train": 3, "valid": 2, "test": 1}[split]
        rank = candidates.index(ex.target) + 1 if ex.target in candidates else 50
        rows.append({"user": ex.user, "user_id": ds.user_ids[ex.user], "target": ex.target,
                     "history_len": len(ds.sequences[ex.user]) - cut, "cut": cut, "candidates": candidates,
                     "scores": np.linspace(1, 0, 10, dtype=np.float32).tolist(), "target_rank": rank})
    (run / "ranker" / "candidates").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(run / "ranker" / "candidates" / f"{split}.parquet")
    return float(np.mean([r["target_rank"] <= 10 for r in rows]))


@pytest.fixture(scope="session")
def hilight_run(ml100k, ml100k_catalog, tiny_sid_model, tmp_path_factory):
    """A run with SIDs, candidate files, stage 1 and an SFT solver (the tiny model), and a trained actor
    (`gr2 hilight train`, 2 steps)."""
    import json

    from typer.testing import CliRunner

    from gr2.cli import app

    run = tmp_path_factory.mktemp("hilight") / "run"
    ml100k_catalog.sids.save(run / "sid")
    recall = {split: write_candidates(ml100k, run, split, range(start, start + 60), seed)
              for seed, (split, start) in enumerate([("train", 0), ("valid", 200), ("test", 400)])}
    (run / "ranker" / "candidates" / "summary.json").write_text(json.dumps({"k": 10, "recall": recall,
                                                                            "train_cuts": 1}))
    for stage in ("stage1", "sft"):
        (run / stage).mkdir()
        (run / stage / "model").symlink_to(tiny_sid_model, target_is_directory=True)
    (run / "recipe.yaml").write_text("dataset: ml-100k\n")
    result = CliRunner().invoke(app, ["hilight", "train", "--run", str(run), *SETS])
    assert result.exit_code == 0, result.output
    return run, result.output
