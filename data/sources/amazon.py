"""Raw Amazon reviews + item metadata as a user downloaded them (2018 and 2023 releases).

Field names differ between releases: 2018 reviews have ``reviewerID``/``asin``/``unixReviewTime``
and metadata ``asin``/``title``/``brand``/``category``; 2023 reviews have ``user_id``/``parent_asin``/
``timestamp`` (milliseconds) and metadata ``parent_asin``/``title``/``store``/``categories``. Files may
be JSON lines or gzip-compressed; 2018 metadata is sometimes Python-literal dicts, which we accept.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from data.errors import DataError
from data.schema import RawDataset
from data.sources.recbole import check_items_defined
from data.sources.tabular import iter_lines

JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
REVIEW_FIELDS = {  # canonical -> field name per release, newest first
    "user": ("user_id", "reviewerID"),
    "item": ("parent_asin", "asin"),
    "time": ("timestamp", "unixReviewTime"),
}
META_ITEM_FIELDS = ("parent_asin", "asin")


def iter_records(path: Path) -> Iterator[tuple[int, dict]]:
    for number, line, complete in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            try:
                record = ast.literal_eval(line)  # 2018 metadata: Python dict literals
            except (ValueError, SyntaxError):
                hint = " (the file looks truncated)" if not complete else ""
                raise DataError(f"not a JSON object: {exc.msg}{hint}", path, number) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object per line, got {type(record).__name__}", path, number)
        yield number, record


def first_present(record: dict, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in record), None)


def is_review_file(path: Path) -> bool:
    for _, record in iter_records(path):
        return first_present(record, REVIEW_FIELDS["user"]) is not None
    raise DataError("file is empty: expected JSON lines of reviews or item metadata", path)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        flat = [_text(v) for v in value]
        return " > ".join(v for v in flat if v) if all(isinstance(v, str) for v in value) else " ".join(flat)
    return " ".join(str(value).split())


def load_meta(path: Path) -> pd.DataFrame:
    records = []
    for number, rec in iter_records(path):
        key = first_present(rec, META_ITEM_FIELDS)
        if key is None:
            raise DataError(f"metadata record has none of {list(META_ITEM_FIELDS)}", path, number)
        categories = rec.get("categories") or rec.get("category") or rec.get("main_category")
        description = rec.get("description") or ""
        records.append({
            "item_id": str(rec[key]),
            "title": _text(rec.get("title")),
            "categories": _text(categories),
            "brand": _text(rec.get("brand") or rec.get("store")),
            "description": _text(description)[:2000],
        })
    if not records:
        raise DataError("metadata file has no records", path)
    return pd.DataFrame.from_records(records).drop_duplicates("item_id", keep="first")


def load_reviews(path: Path) -> tuple[dict[str, list[str]], dict[str, list[int]], dict[str, tuple[Path, int]]]:
    events: dict[str, list[tuple[int, int, str]]] = {}
    mentions: dict[str, tuple[Path, int]] = {}
    fields = None
    for number, rec in iter_records(path):
        if fields is None:
            fields = {k: first_present(rec, names) for k, names in REVIEW_FIELDS.items()}
            missing = [k for k, v in fields.items() if v is None]
            if missing:
                expected = {k: REVIEW_FIELDS[k] for k in missing}
                raise DataError(f"review record lacks fields for {expected}", path, number)
        try:
            user, item, ts = str(rec[fields["user"]]), str(rec[fields["item"]]), int(rec[fields["time"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"review record needs {list(fields.values())}: {exc}", path, number) from None
        if ts > 10**11:  # 2023 release: milliseconds
            ts //= 1000
        mentions.setdefault(item, (path, number))
        events.setdefault(user, []).append((ts, number, item))
    if not events:
        raise DataError("review file has no records", path)
    sequences, timestamps = {}, {}
    for user, evs in events.items():
        evs.sort()
        seen, seq, times = set(), [], []
        for ts, _, item in evs:  # a repeated review of the same item counts once, at its first time
            if item not in seen:
                seen.add(item)
                seq.append(item)
                times.append(ts)
        sequences[user], timestamps[user] = seq, times
    return sequences, timestamps, mentions


def load_amazon(directory_or_file: Path, drop_undefined_items: bool = False) -> RawDataset:
    """A directory with one review file and one metadata file (told apart by their fields)."""
    if directory_or_file.is_file():
        raise DataError("point at the directory holding both the review file and the metadata file",
                        directory_or_file)
    files = sorted(p for p in directory_or_file.iterdir() if p.name.endswith(JSON_SUFFIXES))
    reviews = [p for p in files if is_review_file(p)]
    metas = [p for p in files if p not in reviews]
    if len(reviews) != 1 or len(metas) != 1:
        raise DataError(
            f"expected one review file and one metadata file (*.json[l][.gz]), found reviews "
            f"{[p.name for p in reviews]} and metadata {[p.name for p in metas]}", directory_or_file,
        )
    sequences, timestamps, mentions = load_reviews(reviews[0])
    items = load_meta(metas[0])
    known = set(items["item_id"])
    seqs_before = sequences
    sequences = check_items_defined(sequences, items, metas[0], mentions, drop_undefined_items)
    timestamps = {u: [t for t, i in zip(timestamps[u], seqs_before[u], strict=True) if i in known] for u in sequences}
    return RawDataset(items=items, sequences=sequences, timestamps=timestamps,
                      input_files=[reviews[0], metas[0]], source_format="amazon")
