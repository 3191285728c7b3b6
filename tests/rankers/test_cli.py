"""``gr2 rank`` and ``gr2 bench attention`` as a user runs them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gr2.cli import app

runner = CliRunner()


def test_rank_train_pop_and_candidates(ml100k, tmp_path):
    out = tmp_path / "pop"
    result = runner.invoke(app, ["rank", "train", "--dataset", "ml-100k", "--model", "pop", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output and (out / "metrics.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"hr@10", "ndcg@10", "hr@50"} <= set(metrics["test"])
    result = runner.invoke(app, ["rank", "candidates", "--run", str(out), "--k", "20"])
    assert result.exit_code == 0, result.output
    assert "candidate recall@20" in result.output and "cross-fitting" in result.output
    assert {p.name for p in (out / "candidates").iterdir()} >= {"train.parquet", "valid.parquet", "test.parquet"}


def test_bad_backend_and_model_exit_2_naming_what_is_available(ml100k, tmp_path):
    result = runner.invoke(app, ["rank", "train", "--dataset", "ml-100k", "--model", "sasrec", "--out",
                                 str(tmp_path / "x"), "--attention", "flash_attn"])
    assert result.exit_code == 2 and "not available on this device" in result.output
    assert "available: ['naive', 'sdpa'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["rank", "train", "--dataset", "ml-100k", "--model", "bert", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "available: ['pop', 'cooc', 'content', 'sasrec']" in result.output
    result = runner.invoke(app, ["rank", "train", "--dataset", "ml-100k", "--model", "sasrec", "--out",
                                 str(tmp_path / "y"), "--set", "hiden=3"])
    assert result.exit_code == 2 and "sasrec.hiden: unknown key (sasrec has: " in result.output
    result = runner.invoke(app, ["rank", "backends"])
    assert result.exit_code == 0 and "naive" in result.output and "flash_attn" in result.output


def test_bench_attention_small(tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "attention", "--repeats", "1", "--shapes", "4x16x2x8", "--steps", "4x16",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    row = report["attention"][0]
    assert set(row["seconds"]) >= {"naive", "sdpa"} and row["speedup_vs_naive"]["naive"] == 1.0
    assert report["train_step"][0]["seqs_per_second"]["sdpa"] > 0
    assert "flash_attn" in report["unavailable"]
