"""Turn any source into the canonical prepared dataset, store it, load it back, describe it.

Stored under ``$GR2_HOME/datasets/NAME/`` as ``items.parquet`` + ``sequences.parquet`` (loadable with
``datasets.load_dataset("parquet", ...)`` as well as pandas) + ``stats.json`` + ``manifest.json``.
The directory is written whole and renamed into place, so a failed prepare leaves the old one intact.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.artifacts import atomic_path, build_manifest, datasets_dir
from data.errors import DataError
from data.schema import ITEM_TEXT_FIELDS, PreparedDataset, RawDataset
from data.sources import BUILTIN, load_source


@dataclass
class PrepareConfig:
    source: str
    format: str | None = None
    name: str | None = None
    kcore: int = 0  # keep only users and items with at least k interactions (0 = no filtering)
    drop_undefined_items: bool = False


def dataset_name(source: str, name: str | None) -> str:
    if name:
        cleaned = name
    elif source in BUILTIN:
        cleaned = source
    else:
        cleaned = Path(source).expanduser().resolve().name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cleaned):
        raise DataError(f"dataset name {cleaned!r} must be letters, digits, '.', '_' or '-'")
    return cleaned


def kcore_filter(sequences: dict[str, list[str]], k: int) -> dict[str, list[str]]:
    """Repeatedly drop users and items with fewer than k interactions until none remain."""
    if k <= 1:
        return sequences
    while True:
        counts: dict[str, int] = {}
        for seq in sequences.values():
            for item in seq:
                counts[item] = counts.get(item, 0) + 1
        rare = {i for i, c in counts.items() if c < k}
        kept = {u: [i for i in s if i not in rare] for u, s in sequences.items()}
        kept = {u: s for u, s in kept.items() if len(s) >= k}
        if not rare and len(kept) == len(sequences):
            return kept
        sequences = kept


def to_prepared(raw: RawDataset, name: str, kcore: int = 0) -> PreparedDataset:
    """Dense indices for items and users; items that no sequence uses are dropped."""
    sequences = kcore_filter(raw.sequences, kcore)
    if not sequences:
        raise DataError(f"no interactions left after {kcore}-core filtering" if kcore > 1 else "no interactions")
    used = {i for seq in sequences.values() for i in seq}
    items = raw.items[raw.items["item_id"].isin(used)].reset_index(drop=True)
    for field in ITEM_TEXT_FIELDS:
        if field not in items.columns:
            items[field] = ""
    items = items[["item_id", *ITEM_TEXT_FIELDS]].fillna("").astype(str)
    index = {item: i for i, item in enumerate(items["item_id"])}
    users = list(sequences)
    seqs = [np.fromiter((index[i] for i in sequences[u]), dtype=np.int64) for u in users]
    times = None
    if raw.timestamps is not None:
        times = []
        for u in users:
            kept = set(sequences[u])
            times.append(np.asarray([t for t, i in zip(raw.timestamps[u], raw.sequences[u], strict=True) if i in kept],
                                    dtype=np.int64))
    dataset = PreparedDataset(name=name, items=items, user_ids=users, sequences=seqs, timestamps=times)
    dataset.validate()
    return dataset


def compute_stats(ds: PreparedDataset) -> dict:
    lengths = np.asarray([len(s) for s in ds.sequences])
    titled = int((ds.items["title"].str.strip() != "").sum())
    return {
        "name": ds.name,
        "users": ds.num_users,
        "items": ds.num_items,
        "interactions": ds.num_interactions,
        "items_with_title": titled,
        "density": ds.num_interactions / (ds.num_users * ds.num_items),
        "sequence_length": {
            "mean": float(lengths.mean()), "median": float(np.median(lengths)),
            "min": int(lengths.min()), "max": int(lengths.max()),
        },
        "eval_users": int((lengths >= 3).sum()),
        "has_timestamps": ds.timestamps is not None,
    }


def save_prepared(ds: PreparedDataset, directory: Path, manifest: dict) -> Path:
    items_table = pa.Table.from_pandas(ds.items, preserve_index=False)
    seq_columns = {
        "user_id": pa.array(ds.user_ids, pa.string()),
        "item_index": pa.array([s.tolist() for s in ds.sequences], pa.list_(pa.int64())),
    }
    if ds.timestamps is not None:
        seq_columns["timestamp"] = pa.array([t.tolist() for t in ds.timestamps], pa.list_(pa.int64()))
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        pq.write_table(items_table, tmp / "items.parquet")
        pq.write_table(pa.table(seq_columns), tmp / "sequences.parquet")
        (tmp / "stats.json").write_text(json.dumps(manifest["metrics"], indent=2) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        # Keep the embeddings of a previous prepare only if the item list is unchanged.
        old_items, pointer = directory / "items.parquet", directory / "embeddings.json"
        if pointer.is_file() and old_items.is_file() and pd.read_parquet(old_items).equals(ds.items):
            pointer.rename(tmp / "embeddings.json")
    ds.path = directory
    return directory


def prepare(config: PrepareConfig) -> PreparedDataset:
    name = dataset_name(config.source, config.name)
    raw = load_source(config.source, config.format, config.drop_undefined_items)
    ds = to_prepared(raw, name, config.kcore)
    stats = compute_stats(ds)
    manifest = build_manifest(
        kind="dataset", config={**asdict(config), "source_format": raw.source_format},
        inputs=raw.input_files, metrics=stats,
    )
    save_prepared(ds, datasets_dir() / name, manifest)
    return ds


def prepared_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if (path / "items.parquet").is_file():
        return path
    path = datasets_dir() / str(name_or_path)
    if not (path / "items.parquet").is_file():
        known = sorted(p.name for p in datasets_dir().glob("*") if (p / "items.parquet").is_file()) \
            if datasets_dir().is_dir() else []
        raise DataError(f"dataset {name_or_path!r} is not prepared (prepared: {known}); "
                        f"run `gr2 data prepare {name_or_path}` first", path)
    return path


def load_prepared(name_or_path: str | Path) -> PreparedDataset:
    path = prepared_path(name_or_path)
    items = pd.read_parquet(path / "items.parquet")
    table = pq.read_table(path / "sequences.parquet")
    user_ids = table.column("user_id").to_pylist()
    sequences = [np.asarray(s, dtype=np.int64) for s in table.column("item_index").to_pylist()]
    timestamps = None
    if "timestamp" in table.column_names:
        timestamps = [np.asarray(t, dtype=np.int64) for t in table.column("timestamp").to_pylist()]
    ds = PreparedDataset(name=path.name, items=items, user_ids=user_ids, sequences=sequences,
                         timestamps=timestamps, path=path)
    ds.validate()
    return ds


def load_stats(name_or_path: str | Path) -> dict:
    return json.loads((prepared_path(name_or_path) / "stats.json").read_text())

