"""The heuristic teacher's train traces must not cite co-occurrence counted on their own targets.

Train-split examples (history ``seq[:-c]``, target ``seq[-c]``, c >= 3) have their targets inside
``train_sequences()``; the teacher's co-occurrence is cross-fitted over users exactly as the train-split
candidates are, while valid / test examples read the matrix of all training sequences.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.candidates import fold_of_users, fold_train_sequences, load_candidates
from data.schema import PreparedDataset
from evals.metrics import ranks_from_scores
from gr2.cli.pipeline import Pipeline
from gr2.config import Recipe
from gr2.rerank_data import ItemCatalog, RerankExample, examples_from_candidates
from gr2.teachers import CrossFitCooccurrence, HeuristicTeacher
from rankers.candidates import generate_candidates
from rankers.retrieval import PopularityRanker
from rankers.run import train_run
from tokenizer.sid import SemanticIDs

TITLES = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett"]


@pytest.fixture
def tiny() -> PreparedDataset:
    """Ten items with no title words in common; item 2 follows items 0 and 1 only in user 0's sequence."""
    sequences = [[0, 1, 2, 3, 4], [5, 2, 6, 7, 8], [5, 6, 7, 8, 9], [0, 9, 5, 6, 7]]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(len(TITLES))], "title": TITLES})
    return PreparedDataset("tiny", items, [f"u{u}" for u in range(len(sequences))],
                           [np.asarray(s, dtype=np.int64) for s in sequences])


def catalog_of(ds: PreparedDataset) -> ItemCatalog:
    idx = np.arange(ds.num_items)
    return ItemCatalog.build(ds, SemanticIDs(np.stack([idx // 64, idx % 64], axis=1), (64, 64)))


def pipeline_on(ds: PreparedDataset, run_dir, folds: int = 2, train_cuts: int = 1) -> Pipeline:
    """A pipeline whose dataset and catalogue are given (no prepare, no tokenizer stage)."""
    recipe = Recipe(dataset=ds.name)
    recipe.ranker = dataclasses.replace(recipe.ranker, folds=folds, train_cuts=train_cuts)
    pipeline = Pipeline(recipe, run_dir)
    pipeline.__dict__.update(dataset=ds, catalog=catalog_of(ds))  # fills the cached properties
    return pipeline


def target_evidence(teacher: HeuristicTeacher, example: RerankExample) -> float:
    """The strongest co-occurrence between any history item and the target, as the teacher scores it."""
    _, cooc = teacher.evidence_matrix(example)
    return float(cooc[:, example.target_index].max())


def test_train_trace_cannot_cite_its_own_target(tiny, tmp_path):
    """User 0's train example (history [0, 1], target 2): 1 -> 2 exists only in user 0's own sequence."""
    teacher = pipeline_on(tiny, tmp_path / "run").teacher()
    train = RerankExample(0, [0, 1], [5, 2, 6], 2, "train")
    assert target_evidence(teacher, train) == 0.0
    assert teacher.reply(train, [], False, np.random.default_rng(0)).provenance["cooccurrence"].startswith(
        "cross-fitted fold")
    # valid / test prompts may use every training sequence: the one that is inference-time evidence
    for split in ("valid", "test", ""):
        example = dataclasses.replace(train, split=split)
        assert teacher.cooccurrence.matrix(example) is teacher.cooc
        assert target_evidence(teacher, example) > 0
    # the leak this guards against: the plain train-sequence matrix hands the train example its own target
    leaky = HeuristicTeacher(teacher.catalog, teacher.cooc)
    assert target_evidence(leaky, train) > 0


def test_each_fold_matrix_drops_only_its_users_targets(tiny):
    """Every user's step into its train-split target (seq[-4] -> seq[-3], a pair no one else has) is missing from
    its own fold's matrix and present in the other fold's and in the full one."""
    cross = CrossFitCooccurrence.build(tiny, folds=2, train_cuts=1)
    assert len(cross.per_fold) == 2 and (cross.fold_of == fold_of_users(tiny.num_users, 2, seed=1234)).all()
    assert set(cross.fold_of) == {0, 1}
    for u, s in enumerate(tiny.sequences):
        assert cross.full[s[-4], s[-3]] > 0
        for fold, matrix in enumerate(cross.per_fold):
            assert (matrix[s[-4], s[-3]] > 0) == (cross.fold_of[u] != fold)
    with pytest.raises(ValueError, match="every user's fold"):
        CrossFitCooccurrence(cross.full, cross.per_fold[:1], cross.fold_of)


def test_teacher_folds_match_the_candidates(ml100k, ml100k_catalog, tmp_path):
    """The teacher reads the candidates' manifest (3 folds, 2 cuts here, not the recipe's 2 and 1) and holds out,
    for every train row, exactly what the model that wrote that row's candidates held out."""
    run = tmp_path / "run"
    train_run("ml-100k", "pop", run / "ranker", progress=False)
    generate_candidates(run / "ranker", k=10, folds=3, train_cuts=2, progress=False)
    pipeline = pipeline_on(ml100k, run, folds=2, train_cuts=1)
    pipeline.__dict__["catalog"] = ml100k_catalog
    cross = pipeline.teacher().cooccurrence
    assert len(cross.per_fold) == 3 and (cross.fold_of == fold_of_users(ml100k.num_users, 3, seed=1234)).all()

    df = load_candidates(run / "ranker", "train")
    examples = examples_from_candidates(ml100k, df, "train")
    folds = np.array([cross.fold(ex) for ex in examples])
    for fold in range(3):
        held = fold_train_sequences(ml100k.sequences, cross.fold_of == fold, train_cuts=2)
        rows = df[folds == fold]
        hist = [ml100k.sequences[u][:h] for u, h in zip(rows["user"], rows["history_len"], strict=True)]
        pop = PopularityRanker().fit(held, ml100k.num_items)  # the candidates' fold model, refitted
        assert (rows["target_rank"].to_numpy() == ranks_from_scores(pop.score(hist), rows["target"].to_numpy(),
                                                                    hist)).all()
        for u, h in zip(rows["user"], rows["history_len"], strict=True):  # the user's own data: history only
            assert len(held[u]) <= h
