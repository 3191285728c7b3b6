"""Broken inputs give an error naming the file and line, and leave earlier artifacts untouched."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from data.artifacts import datasets_dir
from data.errors import DataError
from data.prepare import PrepareConfig, load_prepared, prepare
from tests.conftest import write_lines

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"


@pytest.fixture
def seq_dir(tmp_path: Path) -> Path:
    d = tmp_path / "seq"
    write_lines(d / "G.item", ["item_id:token\ttitle:token_seq", "0\tA", "1\tB", "2\tC", "3\tD"])
    write_lines(d / "G.valid.inter", [HEADER, "u\t0 1\t2", "v\t1 2\t3"])
    write_lines(d / "G.test.inter", [HEADER, "u\t0 1 2\t3", "v\t1 2 3\t0"])
    return d


def prepare_dir(d: Path, name: str = "bad") -> None:
    prepare(PrepareConfig(str(d), name=name))


def test_valid_fixture_loads(seq_dir):
    prepare_dir(seq_dir, "good")
    assert load_prepared("good").num_users == 2


def test_truncated_file(seq_dir):
    path = seq_dir / "G.test.inter"
    path.write_text(path.read_text()[:-5])  # cut the last row in the middle, no final newline
    with pytest.raises(DataError, match=r"expected 3 tab-separated fields.*truncated") as err:
        prepare_dir(seq_dir)
    assert err.value.path == str(path) and err.value.line == 3


def test_malformed_row(seq_dir):
    path = write_lines(seq_dir / "G.valid.inter", [HEADER, "u\t0 1\t2", "v 1 2 3", "w\t1\t2"])
    with pytest.raises(DataError) as err:
        prepare_dir(seq_dir)
    assert (err.value.path, err.value.line) == (str(path), 3)
    assert "expected 3 tab-separated fields (user_id, item_id_list, item_id), got 1" in str(err.value)


def test_unknown_column(seq_dir):
    write_lines(seq_dir / "G.item", ["item:token\ttitle:token_seq", "0\tA"])
    with pytest.raises(DataError, match=r"missing column\(s\) \['item_id'\].*found \['item', 'title'\]") as err:
        prepare_dir(seq_dir)
    assert err.value.line == 1


def test_bad_header_type(seq_dir):
    write_lines(seq_dir / "G.item", ["item_id:token\ttitle", "0\tA"])
    with pytest.raises(DataError, match="'name:type'"):
        prepare_dir(seq_dir)


def test_empty_item_file(seq_dir):
    (seq_dir / "G.item").write_text("")
    with pytest.raises(DataError, match="file is empty: expected a header") as err:
        prepare_dir(seq_dir)
    assert err.value.path == str(seq_dir / "G.item")


def test_empty_dataset(seq_dir):
    write_lines(seq_dir / "G.valid.inter", [HEADER])
    write_lines(seq_dir / "G.test.inter", [HEADER])
    with pytest.raises(DataError, match="no users"):
        prepare_dir(seq_dir)


def test_item_referenced_but_not_defined(seq_dir):
    path = write_lines(seq_dir / "G.test.inter", [HEADER, "u\t0 1 2\t3", "v\t1 2 3\t99"])
    with pytest.raises(DataError, match=r"item '99' is not defined in G.item") as err:
        prepare_dir(seq_dir)
    assert (err.value.path, err.value.line) == (str(path), 3)


def test_inconsistent_splits(seq_dir):
    path = write_lines(seq_dir / "G.test.inter", [HEADER, "u\t0 1 3\t2", "v\t1 2 3\t0"])
    with pytest.raises(DataError, match="should end with the previous split's target '2'") as err:
        prepare_dir(seq_dir)
    assert (err.value.path, err.value.line) == (str(path), 2)


def test_bad_timestamp_and_encoding(recbole_dir):
    inter = recbole_dir / "tiny.inter"
    lines = inter.read_text().splitlines()
    lines[3] = "u1\tc\t3\tyesterday"
    write_lines(inter, lines)
    with pytest.raises(DataError, match="timestamp must be a number, got 'yesterday'") as err:
        prepare_dir(recbole_dir)
    assert err.value.line == 4
    inter.write_bytes(b"user_id:token\titem_id:token\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        prepare_dir(recbole_dir)


def test_corrupt_gzip_and_json(tmp_path: Path):
    d = tmp_path / "amz"
    d.mkdir()
    blob = gzip.compress(b'{"reviewerID": "a", "asin": "x", "unixReviewTime": 1}\n' * 2000)
    (d / "reviews.json.gz").write_bytes(blob[: len(blob) // 2])
    (d / "meta.json").write_text('{"asin": "x", "title": "X"}\n')
    with pytest.raises(DataError, match="truncated or corrupt"):
        prepare_dir(d)
    (d / "reviews.json.gz").unlink()
    (d / "reviews.jsonl").write_text('{"reviewerID": "a", "asin": "x", "unixReviewTime": 1}\n{"reviewerID": "a", "as')
    with pytest.raises(DataError, match="not a JSON object.*truncated") as err:
        prepare_dir(d)
    assert err.value.line == 2


def test_failed_prepare_keeps_previous_artifact(seq_dir):
    prepare_dir(seq_dir, "keep")
    before = {p.name: p.read_bytes() for p in (datasets_dir() / "keep").iterdir() if p.is_file()}
    write_lines(seq_dir / "G.test.inter", [HEADER, "u\t0 1 2\t3", "v\t1 2 3\t99"])
    with pytest.raises(DataError):
        prepare_dir(seq_dir, "keep")
    after = {p.name: p.read_bytes() for p in (datasets_dir() / "keep").iterdir() if p.is_file()}
    assert before == after
    assert not [p for p in datasets_dir().iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_unknown_dataset_and_format(tmp_path: Path):
    with pytest.raises(DataError, match="not prepared"):
        load_prepared("never-prepared")
    with pytest.raises(DataError, match="no such file or directory"):
        prepare(PrepareConfig(str(tmp_path / "missing")))
    d = tmp_path / "odd"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="cannot tell the format"):
        prepare(PrepareConfig(str(d)))
    shutil.rmtree(d)
