"""The whole GR2 pipeline on ML-100K, shrunk to seconds a stage: every stage runs and resumes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gr2.cli import app

SHRINK = {
    "ranker.options.epochs": 1, "pretrain.training.max_steps": 10, "midtrain.training.max_steps": 10,
    "midtrain.mixture.num_examples": 300, "traces.max_examples": 100, "sft.training.max_steps": 10,
    "eval.max_users": 16, "eval.generation.max_new_tokens": 48, "tiny_model.hidden_size": 64,
    "tiny_model.num_attention_heads": 2, "tiny_model.num_key_value_heads": 1, "tiny_model.vocab_size": 1024,
    "tiny_model.intermediate_size": 128,
}


@pytest.mark.slow
def test_quickstart_end_to_end_and_rerun(ml100k, tmp_path):
    sets = [arg for key, value in SHRINK.items() for arg in ("--set", f"{key}={value}")]
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["quickstart", "--run", str(run), *sets])
    assert result.exit_code == 0, result.output
    for artifact in ("sid/report.json", "ranker/candidates/summary.json", "stage0/model/config.json",
                     "stage1/model/config.json", "traces/traces.jsonl", "sft/model/config.json",
                     "eval/rerank-test.md", "eval/rerank-test.png", "manifest.json", "recipe.yaml"):
        assert (run / artifact).exists(), artifact
    report = json.loads((run / "eval" / "rerank-test.json").read_text())
    assert [r["system"] for r in report["rows"]] == ["pre-rank", "stage 1", "SFT"]
    assert report["rows"][0]["valid"] is None and report["rows"][0]["identity"] == 1.0
    assert "| pre-rank |" in result.output
    # a second run finds every stage done and only re-evaluates
    again = CliRunner().invoke(app, ["quickstart", "--run", str(run), *sets])
    assert again.exit_code == 0, again.output
    timings = json.loads((run / "timings.json").read_text())
    assert all(timings[s] < 2.0 for s in ("tokenizer", "pretrain", "midtrain", "traces", "sft"))


def test_bad_recipe_key_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "sft", "--run", str(tmp_path), "--set", "sft.trainng.epochs=1"])
    assert result.exit_code == 2 and "unknown key(s) ['trainng']" in result.output
