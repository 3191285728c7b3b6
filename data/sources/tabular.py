"""Reading RecBole-style atomic files: tab-separated, header of ``name:type`` fields.

One reader for all of RecBole's and UniSRec's text files, so that every format reports a bad row
the same way: file, line number, what it expected.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from data.errors import DataError

RECBOLE_TYPES = {"token", "token_seq", "float", "float_seq"}


PROGRESS_MIN_BYTES = 32 << 20  # show a progress bar for files larger than this


def iter_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """Yield (line number, line without its newline, whether it ended with a newline).

    Reads plain or gzip-compressed UTF-8; large files get a progress bar over the bytes on disk.
    """
    size = path.stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}",
               disable=size < PROGRESS_MIN_BYTES, leave=False)
    try:
        with open(path, "rb") as raw:
            stream = gzip.open(raw, "rb") if path.suffix == ".gz" else raw
            with io.TextIOWrapper(stream, encoding="utf-8", newline="") as fh:
                for number, line in enumerate(fh, start=1):
                    if number % 20_000 == 0:
                        bar.update(raw.tell() - bar.n)
                    yield number, line.rstrip("\r\n"), line.endswith("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"compressed file is truncated or corrupt ({exc})", path) from exc
    finally:
        bar.close()


@dataclass
class AtomicHeader:
    names: list[str]  # field names without their types
    types: list[str]

    def index(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None


def parse_header(path: Path, line: str, required: Sequence[str]) -> AtomicHeader:
    names, types = [], []
    for column in line.split("\t"):
        name, sep, kind = column.partition(":")
        if not sep or kind not in RECBOLE_TYPES:
            raise DataError(
                f"header column {column!r} is not 'name:type' with type one of {sorted(RECBOLE_TYPES)}",
                path, 1,
            )
        names.append(name)
        types.append(kind)
    missing = [r for r in required if r not in names]
    if missing:
        raise DataError(
            f"missing column(s) {missing}: expected {list(required)}, found {names}", path, 1
        )
    return AtomicHeader(names, types)


def read_atomic(path: Path, required: Sequence[str]) -> tuple[AtomicHeader, Iterator[tuple[int, list[str]]]]:
    """Parse the header and return it with an iterator of (line number, fields) for each data row.

    Blank lines are skipped; a row with the wrong number of fields is an error (and, on the last
    line without a newline, reported as a truncated file).
    """
    if not path.is_file():
        raise DataError("file not found", path)
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(f"file is empty: expected a header with columns {list(required)}", path, 1)
    header = parse_header(path, first[1], required)
    width = len(header.names)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for number, line, complete in lines:
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != width:
                hint = " (the file looks truncated)" if not complete else ""
                raise DataError(
                    f"expected {width} tab-separated fields ({', '.join(header.names)}), "
                    f"got {len(fields)}{hint}",
                    path, number,
                )
            yield number, fields

    return header, rows()


def parse_int(value: str, path: Path, line: int, what: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise DataError(f"{what} must be a number, got {value!r}", path, line) from None
