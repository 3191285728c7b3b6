"""`gr2 hilight train|eval|apply` on a run directory: artifacts, paired rows against no emphasis, transfer to
another solver, a recipe typo caught at load."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gr2.cli import app
from gr2.rerank_format import EMPHASIS_OPEN
from tests.hilight.conftest import SETS

pytestmark = pytest.mark.slow


def test_train_writes_the_selected_actor_curves_and_manifest(hilight_run):
    run, output = hilight_run
    out = run / "hilight"
    for name in ("actor/actor.pt", "metrics.json", "manifest.json", "curve-reward.png", "curve-kept-share.png",
                 "curve-spans.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] == 50 and metrics["select_users"] == 8  # 60 rows, every 6th without target
    assert "best step" in output
    again = CliRunner().invoke(app, ["hilight", "train", "--run", str(run), *SETS])
    assert again.exit_code == 0 and "exists" in again.output  # a finished actor is not retrained


def test_eval_compares_every_method_with_no_emphasis_on_the_same_users(hilight_run):
    run, _ = hilight_run
    result = CliRunner().invoke(app, ["hilight", "eval", "--run", str(run), *SETS])
    assert result.exit_code == 0, result.output
    for split in ("valid", "test"):
        report = json.loads((run / "hilight" / "eval" / f"eval-{split}.json").read_text())
        rows = {r["system"]: r for r in report["rows"]}
        assert list(rows) == ["pre-rank (no solver)", "none", "random", "recency", "similarity", "cited", "prompt",
                              "hilight"]
        assert {r["users"] for r in rows.values()} == {12}  # a seeded 12 of the 50 users with the target listed
        assert rows["none"].get("changed vs none") is None and rows["prompt"]["spans/example"] == 0
        for name in ("random", "recency", "similarity", "cited", "hilight"):
            assert 0 < rows[name]["kept share"] <= 0.25 and 1 <= rows[name]["spans/example"] <= 5
            assert 0 <= rows[name]["changed vs none"] <= 1 and "[" in rows[name]["NDCG@5 vs none (95% CI)"]
        assert "[" in rows["hilight"]["NDCG@5 vs random (95% CI)"]
        assert set(report["sensitivity"]) == {"random", "recency", "similarity", "cited", "prompt", "hilight"}
        answers = (run / "hilight" / "eval" / f"eval-{split}-answers.jsonl").read_text().splitlines()
        assert len(answers) == 12 and set(json.loads(answers[0])["methods"]) == set(rows) - {"pre-rank (no solver)"}
        assert (run / "hilight" / "eval" / f"eval-{split}.png").is_file()


def test_transfer_to_another_solver_without_retraining(hilight_run):
    run, _ = hilight_run
    result = CliRunner().invoke(app, ["hilight", "eval", "--run", str(run), *SETS, "--solver-model", "stage1",
                                      "--methods", "none,hilight"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "hilight" / "eval" / "eval-stage1-test.json").read_text())
    assert [r["system"] for r in report["rows"]] == ["pre-rank (no solver)", "none", "hilight"]
    assert report["actor_trained_against"].startswith("gr2:") and "stage1" in report["solver"]


def test_apply_shows_and_writes_the_emphasised_prompts(hilight_run, tmp_path):
    run, _ = hilight_run
    out = tmp_path / "applied.jsonl"
    result = CliRunner().invoke(app, ["hilight", "apply", "--run", str(run), *SETS, "--split", "valid",
                                      "--limit", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        user = record["messages"][-1]["content"]
        assert record["spans"] and user.count(EMPHASIS_OPEN) == len(record["spans"])
        assert all(span["text"] in user for span in record["spans"])


def test_a_typo_in_the_hilight_section_fails_at_load(tmp_path):
    result = CliRunner().invoke(app, ["hilight", "train", "--run", str(tmp_path),
                                      "--set", "hilight.training.lerning_rate=0.1"])
    assert result.exit_code == 2 and "hilight.training.lerning_rate: unknown key" in result.output


def test_headroom_measures_single_item_emphasis_with_the_run_solver(hilight_run):
    run, _ = hilight_run
    result = CliRunner().invoke(app, ["hilight", "headroom", "--run", str(run), *SETS, "--split", "test",
                                      "--max-users", "6"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "hilight" / "headroom-test.json").read_text())
    summary = report["summary"]
    assert summary["users"] == 6 and summary["solver calls"] > 6
    assert summary["reward oracle worst item"] <= summary["reward none"] <= summary["reward oracle best item"]
    assert report["rows"][0]["system"] == "latest item" and report["solver"].startswith("gr2:")
    assert (run / "hilight" / "headroom-test.png").is_file() and "oracle" in result.output
    bad = CliRunner().invoke(app, ["hilight", "headroom", "--run", str(run), *SETS, "--split", "train"])
    assert bad.exit_code != 0 and "valid or test" in bad.output
