"""How much emphasis could help a given solver at all, measured before an actor is trained against it.

An actor can only win what the solver lets it win. For each user, the solver answers once without tags
and once with each history item emphasised alone (its whole line, within the budget); from those answers:

- how often any single-item emphasis changes the answer, moves the target, or changes the reward;
- the oracle: the best single item for each user (an upper bound no actor reaches: it knows the target),
  and the worst, against no emphasis;
- by position from the end of the history (1 = the latest item): the mean reward change and how often it
  helps or hurts, so a rule an actor could learn without looking (always the latest item, say) is seen too.

Rewards are the actor's own (``solver_reward``: 0.7 HR@5 + 0.3 NDCG@5); NDCG@5 is reported beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.artifacts import write_text_atomic
from evals.metrics import ndcg_gains
from evals.report import write_report
from gr2.rerank_data import ItemCatalog, RerankExample
from hilight.solver import Solver, solver_reward
from hilight.spans import Budget, HistoryLayout, choose_spans, render_messages

COLUMNS = ("users", "reward vs none", "NDCG@5 vs none", "helped", "hurt",
           "answer changed", "target moved")
PLOT_COLUMNS = ("reward vs none", "helped", "hurt", "answer changed")


def measure_headroom(examples: Sequence[RerankExample], solver: Solver, catalog: ItemCatalog, tokenizer: Any,
                     budget: Budget, progress: bool = False) -> dict[str, Any]:
    """The solver's answers without tags and with each single history item emphasised; summary and per
    position figures (see the module docstring). Items whose line alone exceeds the budget are skipped."""
    examples = [ex for ex in examples if ex.target_index is not None]
    if not examples:
        raise ValueError("no example has its target among the candidates: nothing to measure")
    layouts = [HistoryLayout.for_example(tokenizer, catalog, ex) for ex in examples]
    conversations, sids, owner = [], [], []  # owner: (example, history line or -1 for no emphasis)
    for n, (ex, layout) in enumerate(zip(examples, layouts, strict=True)):
        conversations.append(render_messages(catalog, ex))
        sids.append(catalog.answer_keys(ex))
        owner.append((n, -1))
        for line in range(len(layout.lines)):
            spans = choose_spans(layout, [line], budget, "items")
            if spans:
                conversations.append(render_messages(catalog, ex, spans))
                sids.append(catalog.answer_keys(ex))
                owner.append((n, line))
    answers = solver.answer(conversations, sids, progress=progress)

    def ndcg(rank: int) -> float:
        return 0.0 if rank == 0 else float(ndcg_gains(np.array([rank]), 5)[0])

    base: dict[int, tuple[list[int], int, float]] = {}  # order, target rank (0: unparseable), reward
    tried: list[list[tuple[int, list[int], int, float]]] = [[] for _ in examples]  # + position from the end
    for (n, line), answer in zip(owner, answers, strict=True):
        target = examples[n].target_index
        rank = 0 if answer.fallback else answer.order.index(target) + 1
        if line < 0:
            base[n] = (answer.order, rank, solver_reward(answer, target))
        else:
            tried[n].append((len(layouts[n].lines) - line, answer.order, rank, solver_reward(answer, target)))

    none_r = np.array([base[n][2] for n in range(len(examples))])
    none_n = np.array([ndcg(base[n][1]) for n in range(len(examples))])
    best_r, worst_r, best_n = none_r.copy(), none_r.copy(), none_n.copy()
    changed = np.zeros(len(examples), bool)
    moved = np.zeros(len(examples), bool)
    by_position: dict[int, list[tuple[float, float, bool, bool]]] = {}
    for n, rows in enumerate(tried):
        order0, rank0, _ = base[n]
        for position, order, rank, r in rows:
            d = ndcg(rank)
            best_r[n], worst_r[n], best_n[n] = max(best_r[n], r), min(worst_r[n], r), max(best_n[n], d)
            changed[n] |= order != order0
            moved[n] |= rank != rank0
            by_position.setdefault(position, []).append((r - none_r[n], d - none_n[n], order != order0, rank != rank0))
    reward_changed = best_r > worst_r
    rows_out = []
    for position in sorted(by_position):
        deltas = np.array(by_position[position], dtype=float)
        rows_out.append({"system": "latest item" if position == 1 else f"item {position} from the end",
                         "position from the end": position, "users": len(deltas),
                         "reward vs none": float(deltas[:, 0].mean()), "NDCG@5 vs none": float(deltas[:, 1].mean()),
                         "helped": float((deltas[:, 0] > 0).mean()), "hurt": float((deltas[:, 0] < 0).mean()),
                         "answer changed": float(deltas[:, 2].mean()), "target moved": float(deltas[:, 3].mean())})
    best_fixed = max(rows_out, key=lambda r: r["reward vs none"]) if rows_out else None
    summary = {
        "users": len(examples), "solver calls": len(conversations),
        "reward none": float(none_r.mean()), "reward oracle best item": float(best_r.mean()),
        "reward oracle worst item": float(worst_r.mean()),
        "oracle gain": float(best_r.mean() / none_r.mean() - 1) if none_r.mean() else None,
        "NDCG@5 none": float(none_n.mean()), "NDCG@5 oracle best item": float(best_n.mean()),
        "share answer changed by some item": float(changed.mean()),
        "share target moved by some item": float(moved.mean()),
        "share reward changed by some item": float(reward_changed.mean()),
        "best fixed position": best_fixed and best_fixed["position from the end"],
        "best fixed position reward vs none": best_fixed and best_fixed["reward vs none"],
    }
    return {"summary": summary, "rows": rows_out}


def write_headroom(result: dict[str, Any], out_dir: Path, name: str, title: str,
                   extra: dict | None = None) -> dict[str, Path]:
    """``name.{json,md,png}``: the per-position table, the summary in the JSON and above the table."""
    paths = write_report(out_dir, name, title, result["rows"], COLUMNS, plot_columns=PLOT_COLUMNS,
                         extra={"summary": result["summary"], **(extra or {})})
    lines = [f"- {key}: {value:.4f}" if isinstance(value, float) else f"- {key}: {value}"
             for key, value in result["summary"].items()]
    head, _, table = paths["md"].read_text().partition("\n\n")
    write_text_atomic(paths["md"], f"{head}\n\n" + "\n".join(lines) + "\n\n" + table)
    return paths
