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

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge
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
    max_samples: Annotated[int, Ge(1)] = 8  # M: attempts per example in rejection mode
    seed: int = 0


def _example_key(ex: RerankExample) -> list:
    """What identifies an example across runs of the same recipe (the progress file's key)."""
    return [ex.split, ex.user, ex.target, list(ex.history), list(ex.candidates)]


def _read_progress(path: Path, header: dict) -> dict[str, dict]:
    """Finished examples of an interrupted run, by key. A last line cut short by a kill is dropped (the
    file is truncated to its whole lines); a file begun by another teacher or config is refused."""
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    keep = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                if not raw.endswith(b"\n"):  # the line being written when the run stopped
                    break
                raise DataError("not a JSON progress line", path, number) from None
            if number == 1:
                if entry.get("header") != header:
                    raise DataError(f"progress file of another trace run ({entry.get('header')}, now {header}): "
                                    "remove it, or pass --force to start over", path, 1)
            else:
                done[json.dumps(entry["key"])] = entry
            keep += len(raw)
    if keep < path.stat().st_size:
        os.truncate(path, keep)
    return done


def generate_traces(examples: Iterable[RerankExample], catalog: ItemCatalog, teacher: Teacher,
                    config: TraceConfig, progress: str | Path | None = None) -> tuple[list[dict], dict]:
    """Ask ``teacher`` about every example; the accepted traces (in example order) and a summary.

    Each example draws from its own generator (seeded by ``config.seed`` and its position), so its
    answer does not depend on the examples before it. With ``progress`` (a JSONL path) every finished
    example is appended to that file at once, and examples already there are not asked again: a
    teacher that fails half-way loses nothing, and the rerun gives the traces an unbroken run gives.
    """
    if config.mode not in ("targeted", "rejection", "distill"):
        raise ValueError(f"unknown trace mode {config.mode!r}: expected 'targeted', 'rejection' or 'distill'")
    examples = list(examples)
    header = {"teacher": teacher.name, **asdict(config)}
    done = _read_progress(Path(progress), header) if progress is not None else {}
    entries: list[dict] = []
    resumed = 0
    with contextlib.ExitStack() as stack:
        log = None
        if progress is not None:
            Path(progress).parent.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(progress, "a", encoding="utf-8"))
            if Path(progress).stat().st_size == 0:
                log.write(json.dumps({"header": header}) + "\n")
        for index, ex in enumerate(tqdm(examples, desc=f"traces ({teacher.name}, {config.mode})", unit="ex")):
            key = _example_key(ex)
            entry = done.get(json.dumps(key))
            if entry is not None:
                resumed += 1
            else:
                entry = {"key": key, **_ask(ex, catalog, teacher, config, np.random.default_rng([config.seed, index]))}
                if log is not None:
                    log.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    log.flush()
            entries.append(entry)
    records = [e["trace"] for e in entries if e["trace"] is not None]
    attempted = sum(e["attempted"] for e in entries)
    summary = {
        "teacher": teacher.name, **asdict(config),
        "examples": len(examples), "attempted": attempted, "skipped_target_not_candidate": len(examples) - attempted,
        "accepted": len(records), "acceptance_rate": len(records) / attempted if attempted else 0.0,
        "teacher_calls": sum(e["calls"] for e in entries), "resumed_examples": resumed,
    }
    return records, summary


def _ask(ex: RerankExample, catalog: ItemCatalog, teacher: Teacher, config: TraceConfig,
         rng: np.random.Generator) -> dict:
    """One example's outcome: whether it could be attempted, the teacher calls, the accepted trace or None."""
    target = ex.target_index
    if target is None:
        return {"attempted": 0, "calls": 0, "trace": None}
    messages = catalog.messages(ex)
    sids = catalog.answer_keys(ex)
    tries = config.max_samples if config.mode == "rejection" else 1
    for sample in range(1, tries + 1):
        reply = teacher.reply(ex, messages, reveal_target=config.mode == "targeted", rng=rng)
        parsed = parse_answer(reply.text, sids)
        if parsed.valid and (parsed.order[0] == target or config.mode == "distill"):
            return {"attempted": 1, "calls": sample, "trace": {
                "user": ex.user, "split": ex.split, "history": ex.history, "candidates": ex.candidates,
                "target": ex.target, "target_index": target, "messages": messages, "answer": reply.text,
                "ranking": parsed.order, "evidence": reply.evidence, "samples": sample,
                "provenance": {**reply.provenance, "mode": config.mode},
            }}
    return {"attempted": 1, "calls": tries, "trace": None}


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
