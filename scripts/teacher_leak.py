"""The heuristic teacher before and after cross-fitting, on a run's train split (and valid / test).

Usage: python scripts/teacher_leak.py RECIPE RUN_DIR OUT_DIR

Writes OUT_DIR/results.json: rejection-sampling acceptance on the recipe's train examples with the old
(leaky: co-occurrence counted on every training sequence, the example's own target included) and the new
(cross-fitted) teacher, and each greedy teacher's R@1 / R@5 / NDCG@5 against the pre-rank order with the
paired bootstrap interval. On valid and test both use the full matrix, so they must agree there.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from data.cooccurrence import cooccurrence_matrix
from gr2.cli.run_options import make_pipeline
from gr2.evaluate import rerank_metrics
from gr2.rerank_format import parse_answer
from gr2.teachers import HeuristicTeacher
from gr2.traces import TraceConfig, generate_traces


def main(recipe: str, run: str, out: str) -> None:
    pipeline = make_pipeline(Path(recipe), Path(run), [])
    section = pipeline.recipe.traces
    new = pipeline.teacher()
    old = HeuristicTeacher(pipeline.catalog, cooccurrence_matrix(pipeline.dataset.train_sequences(),
                                                                 pipeline.dataset.num_items), section.heuristic)
    rejection = TraceConfig(mode="rejection", max_samples=16, seed=pipeline.recipe.seed)
    sampled = dataclasses.replace(section.heuristic, temperature=0.3)  # rejection needs a sampling teacher
    greedy = dataclasses.replace(section.heuristic, temperature=0.0)
    train = pipeline.examples("train", section.max_examples, pipeline.recipe.seed, with_target=True)
    results: dict = {"recipe": recipe, "run": run, "rejection": dataclasses.asdict(rejection)}
    for name, teacher in (("leaky", old), ("cross-fitted", new)):
        _, summary = generate_traces(train, pipeline.catalog,
                                     HeuristicTeacher(pipeline.catalog, teacher.cooccurrence, sampled), rejection)
        results.setdefault(name, {})["train acceptance"] = summary
    for split in ("train", "valid", "test"):
        examples = train if split == "train" else pipeline.examples(split, 0, pipeline.recipe.seed, with_target=True)
        results.setdefault("pre-rank", {})[split] = rerank_metrics(examples, None)
        for name, teacher in (("leaky", old), ("cross-fitted", new)):
            t = HeuristicTeacher(pipeline.catalog, teacher.cooccurrence, greedy)
            answers = [parse_answer(t.reply(ex, [], False, np.random.default_rng(0)).text,
                                    pipeline.catalog.candidate_sids(ex)) for ex in examples]
            results[name][split] = rerank_metrics(examples, answers)
        print(split, len(examples), {k: round(results[k][split]["NDCG@5"], 4) for k in ("pre-rank", "leaky",
                                                                                          "cross-fitted")})
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
