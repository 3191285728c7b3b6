"""Teacher traces for stage-2 SFT: targeted or rejection-sampled, written as JSONL with provenance.

*targeted*: the teacher is shown the ground truth and explains it (one call per example).
*rejection*: the truth is hidden; the teacher is asked up to ``max_samples`` times and the first
valid answer whose top-1 is the ground truth is kept (GR2's rejection sampling).
*distill*: the truth is hidden and the teacher's one answer is kept whatever it ranks first: the student
learns the teacher's policy itself, including where it keeps the pre-rank order. With a noisy teacher,
rejection sampling accepts answers that reached the target by noise alone, which teaches a student to
promote items on no evidence; distilling a greedy teacher (e.g. the heuristic at temperature 0) does not. Examples whose
target is not among the candidates cannot be accepted and are skipped. The summary records the
acceptance rate, the thing to watch when choosing a teacher.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from data.artifacts import atomic_path, write_json_atomic
from data.errors import DataError
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import parse_answer
from gr2.teachers.base import Teacher

TRACE_FIELDS = ("user", "split", "history", "candidates", "target", "target_index", "messages", "answer",
                "ranking", "evidence", "samples", "provenance")


@dataclass
class TraceConfig:
    mode: Literal["targeted", "rejection", "distill"] = "rejection"
    max_samples: int = 8  # M: attempts per example in rejection mode
    seed: int = 0


def generate_traces(examples: Iterable[RerankExample], catalog: ItemCatalog, teacher: Teacher,
                    config: TraceConfig) -> tuple[list[dict], dict]:
    if config.mode not in ("targeted", "rejection", "distill"):
        raise ValueError(f"unknown trace mode {config.mode!r}: expected 'targeted', 'rejection' or 'distill'")
    rng = np.random.default_rng(config.seed)
    records: list[dict] = []
    attempted = skipped = calls = 0
    examples = list(examples)
    for ex in tqdm(examples, desc=f"traces ({teacher.name}, {config.mode})", unit="ex"):
        target = ex.target_index
        if target is None:
            skipped += 1
            continue
        attempted += 1
        messages = catalog.messages(ex)
        sids = catalog.candidate_sids(ex)
        tries = config.max_samples if config.mode == "rejection" else 1
        for sample in range(1, tries + 1):
            calls += 1
            reply = teacher.reply(ex, messages, reveal_target=config.mode == "targeted", rng=rng)
            parsed = parse_answer(reply.text, sids)
            if parsed.valid and (parsed.order[0] == target or config.mode == "distill"):
                records.append({
                    "user": ex.user, "split": ex.split, "history": ex.history, "candidates": ex.candidates,
                    "target": ex.target, "target_index": target, "messages": messages, "answer": reply.text,
                    "ranking": parsed.order, "evidence": reply.evidence, "samples": sample,
                    "provenance": {**reply.provenance, "mode": config.mode},
                })
                break
    summary = {
        "teacher": teacher.name, **asdict(config),
        "examples": len(examples), "attempted": attempted, "skipped_target_not_candidate": skipped,
        "accepted": len(records), "acceptance_rate": len(records) / attempted if attempted else 0.0,
        "teacher_calls": calls,
    }
    return records, summary


def write_traces(path: str | Path, records: list[dict], summary: dict) -> Path:
    """``path`` (JSONL, one trace a line) and ``path`` with ``.summary.json``, each written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    write_json_atomic(path.with_suffix(".summary.json"), summary)
    return path


def load_traces(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise DataError("trace file not found; run `gr2 traces generate` first", path)
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not a JSON trace: {exc.msg}", path, number) from None
            missing = [f for f in TRACE_FIELDS if f not in record]
            if missing:
                raise DataError(f"trace lacks fields {missing}; expected {list(TRACE_FIELDS)}", path, number)
            records.append(record)
    return records
