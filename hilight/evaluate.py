"""``gr2 hilight eval``: the frozen solver's ranking with each emphasis method, against no emphasis.

Every row is the same solver on the same users (every user of the split whose target is a candidate,
or a seeded sample), so differences are paired: each row's HR@5 and NDCG@5 relative to the plain
prompt come with a paired bootstrap 95% interval, and NDCG@5 relative to random spans too (an actor
must beat emphasis that knows nothing). Solver sensitivity is the share of answers that change at all
when a method's tags are added (``changed vs none``), and of those whose first pick changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.artifacts import write_text_atomic
from evals.metrics import hit_rate_at_k, ndcg_at_k, ndcg_gains, relative_gain
from evals.report import write_report
from gr2.evaluate import reranked_ranks
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import ParsedAnswer
from hilight.methods import Emphasis, Method
from hilight.solver import Solver, solver_reward
from hilight.spans import HistoryLayout, kept_share, render_messages

COLUMNS = ("R@1", "HR@5", "NDCG@5", "reward", "HR@5 vs none (95% CI)", "NDCG@5 vs none (95% CI)",
           "NDCG@5 vs random (95% CI)", "changed vs none", "top-1 changed", "spans/example", "kept share",
           "e2e HR@5", "e2e NDCG@5", "users")
PLOT_COLUMNS = ("HR@5", "NDCG@5", "changed vs none", "kept share")


def _interval(gain: tuple[float, float, float] | None) -> str | None:
    return None if gain is None else f"{gain[0]:+.1%} [{gain[1]:+.1%}, {gain[2]:+.1%}]"


def method_answers(examples: Sequence[RerankExample], methods: Mapping[str, Method], solver: Solver,
                   catalog: ItemCatalog, layouts: Sequence[HistoryLayout], progress: bool = False
                   ) -> tuple[dict[str, list[Emphasis]], dict[str, list[ParsedAnswer]]]:
    """Each method's emphasis and the solver's answers; all prompts go to the solver in one batch."""
    emphases = {name: method(examples, layouts) for name, method in methods.items()}
    conversations, sids = [], []
    for chosen in emphases.values():
        for ex, emphasis in zip(examples, chosen, strict=True):
            conversations.append(render_messages(catalog, ex, emphasis.spans, emphasis.instruction))
            sids.append(catalog.answer_keys(ex))
    answers = solver.answer(conversations, sids, progress=progress)
    n = len(examples)
    return emphases, {name: answers[i * n:(i + 1) * n] for i, name in enumerate(emphases)}


def method_rows(examples: Sequence[RerankExample], emphases: Mapping[str, list[Emphasis]],
                answers: Mapping[str, list[ParsedAnswer]], layouts: Sequence[HistoryLayout],
                candidate_recall: float | None = None) -> list[dict[str, Any]]:
    """The pre-rank order, then one row per method; intervals are paired over the same users."""
    pre = np.array([ex.target_index + 1 for ex in examples])
    recall = 1.0 if candidate_recall is None else candidate_recall
    rows = [{"system": "pre-rank (no solver)", "R@1": hit_rate_at_k(pre, 1), "HR@5": hit_rate_at_k(pre, 5),
             "NDCG@5": ndcg_at_k(pre, 5), "reward": float(np.mean(0.7 * (pre <= 5) + 0.3 * ndcg_gains(pre, 5))),
             "e2e HR@5": hit_rate_at_k(pre, 5) * recall, "e2e NDCG@5": ndcg_at_k(pre, 5) * recall,
             "users": len(examples)}]
    ranks = {name: reranked_ranks(examples, [a.order for a in rows_]) for name, rows_ in answers.items()}
    base, rand = ranks.get("none"), ranks.get("random")
    for name, answer_rows in answers.items():
        r = ranks[name]
        row: dict[str, Any] = {
            "system": name, "R@1": hit_rate_at_k(r, 1), "HR@5": hit_rate_at_k(r, 5), "NDCG@5": ndcg_at_k(r, 5),
            "reward": float(np.mean([solver_reward(a, ex.target_index) for a, ex in zip(answer_rows, examples,
                                                                                         strict=True)])),
            "spans/example": float(np.mean([len(e.spans) for e in emphases[name]])),
            "kept share": float(np.mean([kept_share(lay, e.spans) for lay, e in zip(layouts, emphases[name],
                                                                                   strict=True)])),
            "e2e HR@5": hit_rate_at_k(r, 5) * recall, "e2e NDCG@5": ndcg_at_k(r, 5) * recall,
            "fallback": float(np.mean([a.fallback for a in answer_rows])), "users": len(examples),
        }
        if base is not None and name != "none":
            hr = relative_gain((base <= 5).astype(float), (r <= 5).astype(float))
            nd = relative_gain(ndcg_gains(base, 5), ndcg_gains(r, 5))
            row.update({"HR@5 vs none (95% CI)": _interval(hr), "NDCG@5 vs none (95% CI)": _interval(nd),
                        "hr5_gain": hr and hr[0], "hr5_gain_ci": hr and list(hr[1:]),
                        "ndcg5_gain": nd and nd[0], "ndcg5_gain_ci": nd and list(nd[1:]),
                        "changed vs none": float(np.mean([a.order != b.order for a, b in
                                                          zip(answer_rows, answers["none"], strict=True)])),
                        "top-1 changed": float(np.mean([a.order[0] != b.order[0] for a, b in
                                                        zip(answer_rows, answers["none"], strict=True)]))})
        if rand is not None and name not in ("random", "none"):
            vs = relative_gain(ndcg_gains(rand, 5), ndcg_gains(r, 5))
            row.update({"NDCG@5 vs random (95% CI)": _interval(vs), "ndcg5_vs_random": vs and vs[0],
                        "ndcg5_vs_random_ci": vs and list(vs[1:])})
        rows.append(row)
    return rows


def write_answers(path: Path, examples: Sequence[RerankExample], emphases: Mapping[str, list[Emphasis]],
                  answers: Mapping[str, list[ParsedAnswer]]) -> Path:
    """Per user and method: the spans shown and the solver's order (what every figure is computed from)."""
    lines = []
    for n, ex in enumerate(examples):
        lines.append(json.dumps({
            "user": ex.user, "target_index": ex.target_index,
            "methods": {name: {"spans": [[s.item, s.start, s.end] for s in emphases[name][n].spans],
                               "order": answers[name][n].order} for name in answers},
        }))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def evaluate_split(examples: Sequence[RerankExample], methods: Mapping[str, Method], solver: Solver,
                   catalog: ItemCatalog, tokenizer: Any, out_dir: Path, name: str, title: str,
                   candidate_recall: float | None = None, extra: dict | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Rows for one split, written as ``name.{json,md,png}`` and ``name-answers.jsonl`` in ``out_dir``."""
    examples = [ex for ex in examples if ex.target_index is not None]
    layouts = [HistoryLayout.for_example(tokenizer, catalog, ex) for ex in examples]
    emphases, answers = method_answers(examples, methods, solver, catalog, layouts, progress)
    rows = method_rows(examples, emphases, answers, layouts, candidate_recall)
    sensitivity = {r["system"]: {"changed": r.get("changed vs none"), "top1_changed": r.get("top-1 changed")}
                   for r in rows if "changed vs none" in r}
    paths = write_report(out_dir, name, title, rows, COLUMNS, plot_columns=PLOT_COLUMNS,
                         extra={"solver": solver.name, "sensitivity": sensitivity, **(extra or {})})
    write_answers(out_dir / f"{name}-answers.jsonl", examples, emphases, answers)
    return {"rows": rows, "paths": paths, "sensitivity": sensitivity}
