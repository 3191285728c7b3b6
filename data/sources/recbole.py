"""RecBole atomic files (``NAME.inter`` + ``NAME.item``) and item-list splits (``item_id_list``).

Item-list splits (RecBole's benchmark files, LLMRank's Amazon Games, UniSRec) store, per split, a
history and the next item. Each user's full sequence is rebuilt from the latest split: the test
history plus the test target; the valid target must be the last item of the test history.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data.errors import DataError
from data.schema import RawDataset
from data.sources.tabular import parse_int, read_atomic

# Column names seen in RecBole item files for each canonical text field.
ITEM_FIELD_ALIASES = {
    "title": ("title", "movie_title", "name", "item_name", "text"),
    "categories": ("categories", "category", "class", "genre", "genres", "cate"),
    "brand": ("brand", "store"),
    "description": ("description", "desc"),
}


SPLIT_SUFFIXES = (".train.inter", ".valid.inter", ".test.inter")


def find_files(directory: Path, suffix: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(suffix))


def one_file(directory: Path, suffix: str, required: bool = True) -> Path | None:
    found = find_files(directory, suffix)
    if len(found) > 1:
        raise DataError(f"several *{suffix} files, expected one: {[p.name for p in found]}", directory)
    if not found:
        if required:
            raise DataError(f"no *{suffix} file found", directory)
        return None
    return found[0]


def load_item_file(path: Path) -> pd.DataFrame:
    """An ``.item`` atomic file -> DataFrame with item_id and whichever text fields it has."""
    header, rows = read_atomic(path, ["item_id"])
    columns = {"item_id": header.index("item_id")}
    for canonical, aliases in ITEM_FIELD_ALIASES.items():
        for alias in aliases:
            if alias in header.names:
                columns[canonical] = header.index(alias)
                break
    extras = {name: header.index(name) for name in ("release_year", "year") if name in header.names}
    records, seen = [], {}
    for number, fields in rows:
        item_id = fields[columns["item_id"]]
        if item_id in seen:
            raise DataError(f"item {item_id!r} defined twice (first on line {seen[item_id]})", path, number)
        seen[item_id] = number
        record = {name: fields[i].strip() for name, i in columns.items()}
        for i in extras.values():
            if fields[i].strip():
                record["year"] = fields[i].strip()
        records.append(record)
    if not records:
        raise DataError("item file has a header but no items", path)
    frame = pd.DataFrame.from_records(records)
    if "year" in frame.columns and "title" in frame.columns:
        # "Toy Story (1995)": the year disambiguates remakes and is useful to an LLM.
        has_year = frame["year"].notna() & (frame["year"] != "")
        frame.loc[has_year, "title"] = frame.loc[has_year, "title"] + " (" + frame.loc[has_year, "year"] + ")"
    return frame.drop(columns=["year"], errors="ignore")


def check_items_defined(
    sequences: dict[str, list[str]],
    items: pd.DataFrame,
    item_path: Path,
    mentions: dict[str, tuple[Path, int]],
    drop_undefined_items: bool = False,
) -> dict[str, list[str]]:
    """Every item an interaction mentions must be in the item file (``mentions``: item -> file, line).

    With ``drop_undefined_items`` their interactions are dropped instead (raw Amazon dumps review
    many items that have no metadata); otherwise the first mention is reported.
    """
    known = set(items["item_id"])
    missing = [item for item in mentions if item not in known]
    if not missing:
        return sequences
    if drop_undefined_items:
        kept = {u: [i for i in seq if i in known] for u, seq in sequences.items()}
        return {u: seq for u, seq in kept.items() if seq}
    path, line = min(mentions[item] for item in missing)
    raise DataError(
        f"item {missing[0]!r} is not defined in {item_path.name} ({len(missing)} undefined item(s) in all; "
        f"--drop-undefined-items drops their interactions)",
        path, line,
    )


def load_recbole_atomic(directory: Path, drop_undefined_items: bool = False) -> RawDataset:
    """``NAME.inter`` (user_id, item_id, optional timestamp) + optional ``NAME.item``."""
    inter_files = [p for p in find_files(directory, ".inter") if not p.name.endswith(SPLIT_SUFFIXES)]
    if len(inter_files) != 1:
        raise DataError(f"expected one NAME.inter file, found {[p.name for p in inter_files]}", directory)
    inter_path = inter_files[0]
    item_path = one_file(directory, ".item", required=False)
    header, rows = read_atomic(inter_path, ["user_id", "item_id"])
    u_col, i_col, t_col = header.index("user_id"), header.index("item_id"), header.index("timestamp")
    events: dict[str, list[tuple[int, int, str]]] = {}
    mentions: dict[str, tuple[Path, int]] = {}
    for number, fields in rows:
        ts = parse_int(fields[t_col], inter_path, number, "timestamp") if t_col is not None else 0
        item = fields[i_col]
        mentions.setdefault(item, (inter_path, number))
        events.setdefault(fields[u_col], []).append((ts, number, item))
    if not events:
        raise DataError("interaction file has a header but no interactions", inter_path)
    sequences, timestamps = {}, {}
    for user, evs in events.items():
        evs.sort()  # by timestamp, then file order
        sequences[user] = [e[2] for e in evs]
        timestamps[user] = [e[0] for e in evs]
    if item_path is not None:
        items = load_item_file(item_path)
        sequences = check_items_defined(sequences, items, item_path, mentions, drop_undefined_items)
    else:
        items = pd.DataFrame({"item_id": sorted(mentions)})
    return RawDataset(
        items=items,
        sequences=sequences,
        timestamps=timestamps if t_col is not None else None,
        input_files=[p for p in (inter_path, item_path) if p is not None],
        source_format="recbole",
    )


def read_item_list_split(path: Path) -> dict[str, tuple[int, list[str], str]]:
    """An item-list split file -> user_id -> (line, history, target) of the user's longest row.

    A user may have several rows when the file lists every prefix of their sequence (published
    UniSRec-style train files: ``u<TAB>0 ... 10<TAB>11``, then ``u<TAB>0 ... 9<TAB>10``, ...), in any
    order. Each row's history + target must then be a prefix of the longest one's; rows that are
    not are an error naming both lines.
    """
    header, rows = read_atomic(path, ["user_id", "item_id_list", "item_id"])
    u_col, l_col, i_col = header.index("user_id"), header.index("item_id_list"), header.index("item_id")
    out: dict[str, tuple[int, list[str], str]] = {}
    for number, fields in rows:
        target = fields[i_col].strip()
        if not target:
            raise DataError("empty item_id: expected the next item's id", path, number)
        user, row = fields[u_col], (number, fields[l_col].split(), target)
        kept = out.get(user)
        if kept is not None:
            longer, shorter = (row, kept) if len(row[1]) > len(kept[1]) else (kept, row)
            longer_items, shorter_items = [*longer[1], longer[2]], [*shorter[1], shorter[2]]
            if longer_items[:len(shorter_items)] != shorter_items:
                at = next(i for i, (a, b) in enumerate(zip(shorter_items, longer_items[:len(shorter_items)],
                                                           strict=True)) if a != b)
                mine, theirs = (row[1] + [row[2]])[at], (kept[1] + [kept[2]])[at]
                raise DataError(
                    f"user {user!r}: this row and line {kept[0]} are not prefixes of one sequence (a user's "
                    f"rows must be): item {at + 1} is {mine!r} here, {theirs!r} there", path, number)
            row = longer
        out[user] = row
    return out


def rebuild_sequences(splits: list[tuple[Path, dict[str, tuple[int, list[str], str]]]]) -> dict[str, list[str]]:
    """Full sequences from item-list splits ordered earliest -> latest (train?, valid, test).

    A user's sequence is the history + target of the latest split they appear in; an earlier split's
    target must then sit at the right place at the end of that history, or the files disagree.
    """
    sequences: dict[str, list[str]] = {}
    for path, rows in splits:
        for user, (number, history, target) in rows.items():
            full = history + [target]
            earlier = sequences.get(user)
            if earlier is not None:
                prev_target = earlier[-1]
                if not history or history[-1] != prev_target:
                    raise DataError(
                        f"user {user!r}: history should end with the previous split's target "
                        f"{prev_target!r}, ends with {history[-1] if history else 'nothing'!r}",
                        path, number,
                    )
            sequences[user] = full
    return sequences


def load_recbole_item_list(directory: Path, drop_undefined_items: bool = False) -> RawDataset:
    """``NAME.item`` + ``NAME.valid.inter`` / ``NAME.test.inter`` (and ``NAME.train.inter`` if any)."""
    item_path = one_file(directory, ".item")
    split_paths = [one_file(directory, f".{s}.inter", required=(s != "train")) for s in ("train", "valid", "test")]
    splits = [(p, read_item_list_split(p)) for p in split_paths if p is not None]
    sequences = rebuild_sequences(splits)
    if not sequences:
        raise DataError("no users found in the split files", directory)
    items = load_item_file(item_path)
    mentions: dict[str, tuple[Path, int]] = {}
    for path, rows in splits:
        for number, history, target in rows.values():
            for item in (*history, target):
                mentions.setdefault(item, (path, number))
    sequences = check_items_defined(sequences, items, item_path, mentions, drop_undefined_items)
    return RawDataset(
        items=items,
        sequences=sequences,
        input_files=[item_path, *(p for p, _ in splits)],
        source_format="recbole-seq",
    )
