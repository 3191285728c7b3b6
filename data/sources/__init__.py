"""Source formats and how to recognise them. Each loader returns a ``RawDataset``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.errors import DataError
from data.schema import RawDataset
from data.sources.amazon import JSON_SUFFIXES, load_amazon
from data.sources.movielens import load_ml100k
from data.sources.recbole import SPLIT_SUFFIXES, load_recbole_atomic, load_recbole_item_list
from data.sources.unisrec import load_unisrec

FORMATS: dict[str, Callable[[Path, bool], RawDataset]] = {
    "recbole": load_recbole_atomic,
    "recbole-seq": load_recbole_item_list,
    "unisrec": load_unisrec,
    "amazon": load_amazon,
}
BUILTIN: dict[str, Callable[[bool], RawDataset]] = {"ml-100k": load_ml100k}


def detect_format(directory: Path) -> str:
    """Guess a directory's format from its file names; raise with what was found if unsure."""
    if not directory.is_dir():
        raise DataError(
            f"not a directory and not a built-in dataset (built-ins: {sorted(BUILTIN)})", directory
        )
    names = [p.name for p in directory.iterdir() if p.is_file()]
    has = lambda suffix: any(n.endswith(suffix) for n in names)  # noqa: E731
    if has(".text") and has(".inter"):
        return "unisrec"
    if has(".item") and any(n.endswith(SPLIT_SUFFIXES) for n in names):
        return "recbole-seq"
    if has(".inter"):
        return "recbole"
    if any(n.endswith(JSON_SUFFIXES) for n in names):
        return "amazon"
    raise DataError(
        f"cannot tell the format from files {sorted(names)[:10]}; pass --format one of {sorted(FORMATS)}",
        directory,
    )


def load_source(name_or_path: str, fmt: str | None = None, drop_undefined_items: bool = False) -> RawDataset:
    if name_or_path in BUILTIN and fmt in (None, name_or_path):
        return BUILTIN[name_or_path](drop_undefined_items)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DataError(f"no such file or directory, and not a built-in dataset ({sorted(BUILTIN)})", path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {sorted(FORMATS)}")
    return FORMATS[fmt](path, drop_undefined_items)
