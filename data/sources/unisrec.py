"""UniSRec-style processed data: ``NAME.text`` + ``NAME.{train,valid,test}.inter`` + ``NAME.item2index``.

The split files are item-list splits (as RecBole's); ``.text`` holds one text line per item; the
optional ``.item2index`` maps original ids (ASINs) to the indices used in the other files, and when
present the original ids become the canonical ``item_id``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data.errors import DataError
from data.schema import RawDataset
from data.sources.recbole import check_items_defined, one_file, read_item_list_split, rebuild_sequences
from data.sources.tabular import iter_lines, read_atomic


def read_text_file(path: Path) -> pd.DataFrame:
    header, rows = read_atomic(path, ["item_id", "text"])
    i_col, t_col = header.index("item_id"), header.index("text")
    records = [{"item_id": f[i_col], "title": f[t_col].strip()} for _, f in rows]
    if not records:
        raise DataError("text file has a header but no items", path)
    return pd.DataFrame.from_records(records)


def read_item2index(path: Path) -> dict[str, str]:
    """index -> original id; lines are ``original<TAB>index`` (a header line, if any, is skipped)."""
    index_to_id = {}
    for number, line, complete in iter_lines(path):
        if not line.strip() or (number == 1 and ":" in line):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1].strip().isdigit():
            hint = " (the file looks truncated)" if not complete else ""
            raise DataError(f"expected 'original_id<TAB>index', got {line[:80]!r}{hint}", path, number)
        index_to_id[fields[1].strip()] = fields[0].strip()
    return index_to_id


def load_unisrec(directory: Path, drop_undefined_items: bool = False) -> RawDataset:
    text_path = one_file(directory, ".text")
    split_paths = [one_file(directory, f".{s}.inter", required=(s == "test")) for s in ("train", "valid", "test")]
    splits = [(p, read_item_list_split(p)) for p in split_paths if p is not None]
    sequences = rebuild_sequences(splits)
    items = read_text_file(text_path)
    mentions: dict[str, tuple[Path, int]] = {}
    for path, rows in splits:
        for number, history, target in rows.values():
            for item in (*history, target):
                mentions.setdefault(item, (path, number))
    sequences = check_items_defined(sequences, items, text_path, mentions, drop_undefined_items)
    inputs = [text_path, *(p for p, _ in splits)]
    map_path = one_file(directory, ".item2index", required=False)
    if map_path is not None:
        index_to_id = read_item2index(map_path)
        unmapped = [i for i in items["item_id"] if i not in index_to_id]
        if unmapped:
            raise DataError(f"item index {unmapped[0]!r} from {text_path.name} has no entry", map_path)
        items["item_id"] = [index_to_id[i] for i in items["item_id"]]
        sequences = {u: [index_to_id[i] for i in seq] for u, seq in sequences.items()}
        inputs.append(map_path)
    return RawDataset(items=items, sequences=sequences, input_files=inputs, source_format="unisrec")
