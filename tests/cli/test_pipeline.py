"""The whole GR2 pipeline on ML-100K, shrunk to seconds a stage: every stage runs, re-runs skip
finished work, and the SFT stage trains data-parallel under ``accelerate launch`` on 2 CPU processes.
The run is the session's ``small_run`` (tests/conftest.py): `gr2 quickstart` as `make demo` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gr2.cli import app
from tests.shrunk_run import SETS  # the shared run itself is the session fixture ``small_run`` (tests/conftest.py)


@pytest.mark.slow
def test_quickstart_end_to_end(small_run):
    run, output = small_run
    for artifact in ("sid/report.json", "ranker/candidates/summary.json", "stage0/model/config.json",
                     "stage1/model/config.json",
                     "stage1/phase-0-mixture/model/config.json", "traces/traces.jsonl", "sft/model/config.json",
                     "rl-conditional/model/config.json", "rl-conditional/curve-reward.png",
                     "eval/rerank-test.md", "eval/rerank-test.png", "manifest.json", "recipe.yaml"):
        assert (run / artifact).exists(), artifact
    report = json.loads((run / "eval" / "rerank-test.json").read_text())
    models = ["stage 1", "SFT", "RL-conditional"]  # constrained as served, then each decoded freely
    assert [r["system"] for r in report["rows"]] == [
        "pre-rank", "heuristic teacher (greedy)", "stage 1 (SID likelihood)"] + [
        m + s for m in models for s in ("", " (free decoding)")]
    assert report["rows"][1]["valid"] == report["rows"][2]["valid"] == 1.0  # orders, always permutations
    full = json.loads((run / "eval" / "stage1-full-test.json").read_text())
    assert [r["system"] for r in full["rows"]] == ["co-occurrence", "SASRec (pre-ranker)",
                                                   "stage 1 (beam search over SIDs)"]
    assert all(0 <= r["hr@10"] <= 1 and r["users"] == full["rows"][0]["users"] for r in full["rows"])
    assert report["rows"][0]["valid"] is None and report["rows"][0]["identity"] == 1.0
    assert "| pre-rank |" in output


@pytest.mark.slow
def test_quickstart_ends_serving_a_sample_rerank(small_run):
    """The sample answer comes back over HTTP as a permutation (an untrained model's may be a fallback)."""
    _, output = small_run
    assert "/v1/rerank: test-split" in output and "fallback: " in output and "try it: curl" in output
    table = output[output.index("/v1/rerank: test-split"):output.index("reasoning:")]
    ranks = [line.split("│")[2].strip() for line in table.splitlines() if line.count("│") >= 6]
    assert sorted(int(r) for r in ranks if r.isdigit()) == list(range(1, 11))  # the pre-rank positions, permuted


STAGE_DIRS = {"tokenizer": "sid", "ranker": "ranker", "pretrain": "stage0", "midtrain": "stage1", "traces": "traces",
              "sft": "sft", "rl": "rl-conditional"}


def stage_files(run: Path) -> dict[str, dict[str, int]]:
    """Each stage's own record: every file it wrote, with its modification time (ns)."""
    return {stage: {str(p.relative_to(run)): p.stat().st_mtime_ns for p in (run / folder).rglob("*") if p.is_file()}
            for stage, folder in STAGE_DIRS.items()}


@pytest.mark.slow
def test_rerun_skips_finished_stages(small_run):
    """A finished stage is not redone: none of its files is written again (artifacts are replaced atomically,
    so a stage that ran would leave new modification times)."""
    run, _ = small_run
    before = stage_files(run)
    assert all(before.values()), [s for s, files in before.items() if not files]
    again = CliRunner().invoke(app, ["quickstart", "--run", str(run), *SETS, "--no-serve"])
    assert again.exit_code == 0, again.output
    after = stage_files(run)
    assert {s: f for s, f in after.items() if f != before[s]} == {}
    assert set(json.loads((run / "timings.json").read_text())) >= set(STAGE_DIRS)


@pytest.mark.slow
def test_eval_rerun_reads_each_models_answers_back(small_run):
    """A second `gr2 eval rerank` decodes nothing it decoded before (same models, settings, users): each model
    row comes from RUN/eval/answers/, and the tables are the same."""
    run, _ = small_run
    cached = sorted(p.name for p in (run / "eval" / "answers").glob("*.json"))
    assert "SFT-test.json" in cached and "RL-conditional-valid.json" in cached, cached
    before = {r["system"]: r for r in json.loads((run / "eval" / "rerank-test.json").read_text())["rows"]}
    # the rows that are not model answers (teacher, stage-1 likelihood, full-ranking beam search) are left out
    skip = ["eval.teacher_row=false", "eval.likelihood_row=false", "eval.stage1_full_ranking=false"]
    reports = {p: p.read_bytes() for p in (run / "eval").glob("rerank-*.*")}  # the shared run keeps its own
    try:
        again = CliRunner().invoke(app, ["eval", "rerank", "--run", str(run), *SETS,
                                         *[a for s in skip for a in ("--set", s)]])
        rerun = json.loads((run / "eval" / "rerank-test.json").read_text())["rows"]
    finally:
        for path, data in reports.items():
            path.write_bytes(data)
    assert again.exit_code == 0, again.output
    assert again.output.count("answers from") == len(cached)
    after = {r["system"]: r for r in rerun}
    assert set(after) <= set(before) and "SFT" in after
    for system, row in after.items():  # the same metrics (agreement with the left-out teacher aside)
        assert {k: v for k, v in row.items() if k != "top-1 = teacher"} == \
            {k: v for k, v in before[system].items() if k != "top-1 = teacher"}


@pytest.mark.slow
def test_sft_under_accelerate_launch_two_cpu_processes(small_run):
    """Two gloo ranks train; rank 0 alone writes the model (see configs/accelerate/cpu-2proc.yaml)."""
    run, _ = small_run
    sets = [*SETS, "--set", "sft.training.max_steps=4", "--set", "sft.training.save_steps=4"]
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "cpu-2proc.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "-m", "gr2.cli", "train", "sft", "--run", str(run), "--force", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=os.environ.copy())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((run / "sft" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert (run / "sft" / "model" / "config.json").is_file()


def test_bad_recipe_key_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(app, ["train", "sft", "--run", str(tmp_path), "--set", "sft.trainng.epochs=1"])
    assert result.exit_code == 2 and "sft.trainng: unknown key" in result.output


def test_run_made_on_another_dataset_asks_for_its_recipe(tmp_path):
    (tmp_path / "recipe.yaml").write_text("dataset: games\n")
    result = CliRunner().invoke(app, ["eval", "rerank", "--run", str(tmp_path)])
    assert result.exit_code == 2 and "was made on 'games'" in result.output and "--recipe" in result.output


@pytest.mark.slow
def test_gr2_serve_answers_rerank_and_recommend_requests(small_run, ml100k, tmp_path):
    """`gr2 serve` as a user starts it: a separate process on loopback, real HTTP requests, then
    `gr2 bench load --url` against it (the must-show soak, shortened)."""
    import urllib.error
    import urllib.request

    from serving.load import ServerProcess

    run, _ = small_run

    def post(url: str, payload: dict) -> tuple[int, dict]:
        request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    with ServerProcess(["--run", str(run)], tmp_path / "server.log", start_timeout_s=300) as server:
        ids = ml100k.items["item_id"].tolist()
        status, answer = post(f"{server.url}/v1/rerank", {"history": [{"id": ids[0]}],
                                                          "candidates": [{"id": i} for i in ids[10:20]]})
        assert status == 200 and sorted(r["index"] for r in answer["results"]) == list(range(10))
        assert answer["model"].startswith("gr2-ml-100k-rl-conditional")
        user = ml100k.user_ids[0]
        status, answer = post(f"{server.url}/v1/recommend", {"user_id": user, "top_n": 3})
        assert status == 200, answer
        seen = {ids[i] for i in ml100k.sequences[0]}
        assert len(answer["candidates"]) == 10 and len({r["id"] for r in answer["results"]}) == 3
        assert not seen & set(answer["candidates"])
        assert post(f"{server.url}/v1/recommend", {"user_id": "nobody"})[0] == 404
        result = CliRunner().invoke(app, ["bench", "load", "--run", str(run), "--url", server.url, "--clients", "4",
                                          "--seconds", "4", "--out", str(tmp_path / "load.json")])
        assert result.exit_code == 0, result.output + server.log_tail()
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["ok"] > 0 and report["errors"] == 0 and report["invalid"] == 0
    assert report["status"].get("200") == report["ok"]


def test_train_rl_records_the_recipe_and_manifest_like_the_other_stages(tmp_path, monkeypatch):
    from gr2.cli.pipeline import Pipeline

    ran = []
    monkeypatch.setattr(Pipeline, "run_rl", lambda self, rewards=None: ran.append(rewards))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "rl", "--run", str(run), "--reward", "naive",
                                      "--set", "rl.max_examples=7"])
    assert result.exit_code == 0, result.output
    assert ran == [["naive"]]
    assert yaml.safe_load((run / "recipe.yaml").read_text())["rl"]["max_examples"] == 7
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "gr2-run" and manifest["config"]["rl"]["max_examples"] == 7
    assert "rl" in manifest["metrics"]["seconds"] and "rl" in json.loads((run / "timings.json").read_text())
