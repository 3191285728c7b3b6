"""Every source format loads into the canonical form with the right counts and order."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from data.errors import DataError
from data.prepare import PrepareConfig, compute_stats, load_prepared, prepare
from data.sources import detect_format
from tests.conftest import SHARED_GAMES, write_lines


def test_ml100k_counts(ml100k):
    assert (ml100k.num_users, ml100k.num_items, ml100k.num_interactions) == (943, 1682, 100_000)
    assert ml100k.items.loc[ml100k.items["item_id"] == "1", "title"].item() == "Toy Story (1995)"
    # chronological: every user's timestamps are non-decreasing
    assert all(np.all(np.diff(t) >= 0) for t in ml100k.timestamps)


def test_ml100k_manifest_records_inputs(ml100k):
    manifest = json.loads((ml100k.path / "manifest.json").read_text())
    assert {Path(p).name for p in manifest["inputs"]} == {"ml-100k.inter", "ml-100k.item"}
    assert all(len(h) == 64 for h in manifest["inputs"].values())
    assert manifest["metrics"]["interactions"] == 100_000
    assert "torch" in manifest["versions"]


def test_games_counts_and_sequences(games):
    assert games.num_users == 50_546
    assert games.num_items == 16_859
    assert (games.items["title"].str.len() > 0).all()
    # user 0's full sequence is the test history plus the test target (see shared/datasets/README.md)
    test_row = (SHARED_GAMES / "Games-6k.test.inter").read_text().splitlines()[1].split("\t")
    ids = games.items["item_id"].to_numpy()
    user0 = games.user_ids.index(test_row[0])
    assert list(ids[games.sequences[user0]]) == test_row[1].split() + [test_row[2]]


def test_leave_one_out(games):
    test, valid = games.eval_examples("test"), games.eval_examples("valid")
    assert len(test) == len(valid) == games.num_users
    seq = games.sequences[int(test.users[0])]
    assert test.targets[0] == seq[-1] and valid.targets[0] == seq[-2]
    assert np.array_equal(test.histories[0], seq[:-1])
    assert np.array_equal(games.train_sequences()[0], seq[:-2])


def test_recbole_atomic_sorts_by_time(recbole_dir):
    ds = prepare(PrepareConfig(str(recbole_dir)))
    assert detect_format(recbole_dir) == "recbole"
    ids = ds.items["item_id"].to_numpy()
    assert list(ids[ds.sequences[ds.user_ids.index("u1")]]) == ["a", "b", "c", "d"]
    assert ds.items.set_index("item_id").loc["a", "brand"] == "Acme"


def test_kcore_filter(recbole_dir):
    ds = prepare(PrepareConfig(str(recbole_dir), name="tiny2", kcore=2))
    # u4 (1 item) goes; then e is left with one user (u2) and goes too; u2 keeps a and c.
    counts = np.bincount(np.concatenate(ds.sequences), minlength=ds.num_items)
    assert counts.min() >= 2 and min(len(s) for s in ds.sequences) >= 2
    assert sorted(ds.user_ids) == ["u1", "u2", "u3"] and sorted(ds.items["item_id"]) == ["a", "b", "c", "d"]
    assert compute_stats(ds)["interactions"] == 9


def test_prepared_parquet_loads_with_datasets(ml100k):
    import datasets

    seqs = datasets.load_dataset("parquet", data_files=str(ml100k.path / "sequences.parquet"), split="train")
    assert len(seqs) == 943 and set(seqs.column_names) >= {"user_id", "item_index"}


def test_unisrec(tmp_path: Path):
    d = tmp_path / "Sci"
    write_lines(d / "Sci.text", ["item_id:token\ttext:token_seq", "0\tMicroscope", "1\tBeaker", "2\tPipette",
                                 "3\tCentrifuge"])
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    write_lines(d / "Sci.train.inter", [header, "7\t0\t1", "8\t2\t3"])
    write_lines(d / "Sci.valid.inter", [header, "7\t0 1\t2", "8\t2 3\t0"])
    write_lines(d / "Sci.test.inter", [header, "7\t0 1 2\t3", "8\t2 3 0\t1"])
    write_lines(d / "Sci.item2index", ["B00A\t0", "B00B\t1", "B00C\t2", "B00D\t3"])
    assert detect_format(d) == "unisrec"
    ds = prepare(PrepareConfig(str(d)))
    ids = ds.items["item_id"].to_numpy()
    assert list(ids[ds.sequences[ds.user_ids.index("7")]]) == ["B00A", "B00B", "B00C", "B00D"]
    assert ds.items.set_index("item_id").loc["B00D", "title"] == "Centrifuge"



def _unisrec_dir(d: Path, train_rows: list[str]) -> Path:
    """Items 0-5; user 7 watches 0 1 2 3 4 5, user 8 watches 5 4 3 2; valid/test hold the last two."""
    write_lines(d / "Sci.text", ["item_id:token\ttext:token_seq", *(f"{i}\tItem {i}" for i in range(6))])
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    write_lines(d / "Sci.train.inter", [header, *train_rows])
    write_lines(d / "Sci.valid.inter", [header, "7\t0 1 2 3\t4", "8\t5 4\t3"])
    write_lines(d / "Sci.test.inter", [header, "7\t0 1 2 3 4\t5", "8\t5 4 3\t2"])
    return d


@pytest.mark.parametrize("layout", ["one row", "every prefix, longest first", "every prefix, shortest first"])
def test_unisrec_train_file_with_one_row_or_every_prefix(tmp_path: Path, layout: str):
    """Published UniSRec sets list a user's train sequence once per prefix; each layout gives the same data."""
    rows = {"one row": ["7\t0 1 2\t3", "8\t5\t4"],
            "every prefix, longest first": ["7\t0 1 2\t3", "7\t0 1\t2", "7\t0\t1", "8\t5\t4"],
            "every prefix, shortest first": ["7\t0\t1", "8\t5\t4", "7\t0 1\t2", "7\t0 1 2\t3"]}[layout]
    d = _unisrec_dir(tmp_path / "Sci", rows)
    ds = prepare(PrepareConfig(str(d), format="unisrec", name="sci-" + layout.replace(",", "").replace(" ", "-")))
    ids = ds.items["item_id"].to_numpy()
    sequence = lambda user: list(ids[ds.sequences[ds.user_ids.index(user)]])  # noqa: E731
    assert sequence("7") == ["0", "1", "2", "3", "4", "5"] and sequence("8") == ["5", "4", "3", "2"]


def test_unisrec_rows_that_disagree_name_their_lines(tmp_path: Path):
    d = _unisrec_dir(tmp_path / "Sci", ["7\t0 1 2\t3", "7\t0 2\t1", "8\t5\t4"])
    with pytest.raises(DataError, match=r"user '7': this row and line 2 are not prefixes of one sequence.*"
                                        r"item 2 is '2' here, '1' there") as err:
        prepare(PrepareConfig(str(d), format="unisrec", name="sci-bad"))
    assert (err.value.path, err.value.line) == (str(d / "Sci.train.inter"), 3)
    # a train file whose longest row still disagrees with the next split keeps the split-to-split error
    d = _unisrec_dir(tmp_path / "Sci2", ["7\t0 1\t2", "7\t0\t1", "8\t5\t4"])
    with pytest.raises(DataError, match=r"user '7': history should end with the previous split's target '2', "
                                        r"ends with '3'") as err:
        prepare(PrepareConfig(str(d), format="unisrec", name="sci-bad2"))
    assert (err.value.path, err.value.line) == (str(d / "Sci.valid.inter"), 2)

def _jsonl(path: Path, records: list[dict], gz: bool = False) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def test_amazon_2018(tmp_path: Path):
    d = tmp_path / "amz18"
    d.mkdir()
    reviews = [{"reviewerID": "R1", "asin": a, "overall": 5.0, "unixReviewTime": t}
               for a, t in [("X2", 20), ("X1", 10), ("X3", 30), ("X1", 40)]]
    _jsonl(d / "Video_Games.json.gz", reviews, gz=True)
    # 2018 metadata is sometimes Python literals rather than JSON
    (d / "meta_Video_Games.json").write_text(
        "{'asin': 'X1', 'title': 'Zelda', 'brand': 'Nintendo', 'category': ['Games', 'Switch']}\n"
        + json.dumps({"asin": "X2", "title": "Mario", "description": ["Jump", "run"]}) + "\n"
        + json.dumps({"asin": "X3", "title": "Metroid"}) + "\n"
    )
    assert detect_format(d) == "amazon"
    ds = prepare(PrepareConfig(str(d)))
    ids = ds.items["item_id"].to_numpy()
    assert list(ids[ds.sequences[0]]) == ["X1", "X2", "X3"]  # repeat of X1 counted once
    zelda = ds.items.set_index("item_id").loc["X1"]
    assert (zelda["brand"], zelda["categories"]) == ("Nintendo", "Games > Switch")


def test_amazon_2023_and_drop_undefined(tmp_path: Path):
    d = tmp_path / "amz23"
    d.mkdir()
    _jsonl(d / "Video_Games.jsonl", [
        {"user_id": "U", "parent_asin": "P1", "asin": "A1", "rating": 5, "timestamp": 1_600_000_000_000},
        {"user_id": "U", "parent_asin": "P9", "asin": "A9", "rating": 5, "timestamp": 1_600_000_100_000},
        {"user_id": "U", "parent_asin": "P2", "asin": "A2", "rating": 4, "timestamp": 1_600_000_200_000},
    ])
    _jsonl(d / "meta_Video_Games.jsonl", [
        {"parent_asin": "P1", "title": "Halo", "store": "Xbox", "categories": ["Games"]},
        {"parent_asin": "P2", "title": "Gears", "store": "Xbox", "categories": []},
    ])
    ds = prepare(PrepareConfig(str(d), drop_undefined_items=True))
    assert list(ds.items["item_id"].to_numpy()[ds.sequences[0]]) == ["P1", "P2"]
    assert list(ds.timestamps[0]) == [1_600_000_000, 1_600_000_200]
    assert load_prepared(ds.name).items.set_index("item_id").loc["P1", "brand"] == "Xbox"


def test_progress_bar_path_reads_everything(tmp_path: Path, monkeypatch, capsys):
    from data.sources import tabular

    monkeypatch.setattr(tabular, "PROGRESS_MIN_BYTES", 0)  # force the bar on for a small file
    path = tmp_path / "big.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(50_000):
            fh.write(json.dumps({"i": i}) + "\n")
    lines = list(tabular.iter_lines(path))
    assert len(lines) == 50_000 and lines[-1][1] == '{"i": 49999}'
    assert "reading big.jsonl.gz" in capsys.readouterr().err
