"""``gr2 eval export``: a run's reports and the files that check them, copied with their paths."""

from __future__ import annotations

from typer.testing import CliRunner

from gr2.cli import app


def test_export_copies_reports_recipe_and_timings_only(tmp_path):
    run, out = tmp_path / "run", tmp_path / "results"
    files = {"recipe.yaml": "dataset: games\n", "timings.json": "{}", "eval/rerank-test.json": "{}",
             "eval/rerank-test.md": "# t", "eval/rerank-test.png": "png", "stage1/selection.json": "{}",
             "rl-naive/metrics.json": "{}", "rl-naive/curve-reward.png": "png",
             "sft/model/model.safetensors": "weights", "traces/traces.jsonl": "{}"}
    for name, text in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    result = CliRunner().invoke(app, ["eval", "export", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    copied = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert copied == sorted(n for n in files if not n.startswith(("sft/model", "traces/traces.jsonl")))
    assert (out / "eval/rerank-test.md").read_text() == "# t"
    bad = CliRunner().invoke(app, ["eval", "export", "--run", str(tmp_path / "nothing"), "--out", str(out)])
    assert bad.exit_code != 0 and "recipe.yaml" in bad.output
