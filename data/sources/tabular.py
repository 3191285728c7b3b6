"""Reading RecBole-style atomic files: tab-separated, header of ``name:type`` fields.

One reader for all of RecBole's and UniSRec's text files, so that every format reports a bad row
the same way: file, line number, what it expected.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from data.errors import DataError

RECBOLE_TYPES = {"token", "token_seq", "float", "float_seq"}


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file, gzip-compressed or not, as UTF-8 with line endings left alone."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """Yield (line number, line without its newline, whether it ended with a newline)."""
    try:
        with open_text(path) as fh:
            for number, raw in enumerate(fh, start=1):
                complete = raw.endswith("\n")
                yield number, raw.rstrip("\r\n"), complete
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    except (EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"compressed file is truncated or corrupt ({exc})", path) from exc


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
