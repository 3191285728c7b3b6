"""The README's results section comes from the run's eval JSON, through `gr2 eval readme`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from data.errors import DataError
from evals.readme import END, START, replace_section, results_markdown
from evals.report import write_report
from gr2.cli import app


@pytest.fixture
def run(tmp_path):
    rows = [{"system": "pre-rank", "R@5": 0.7, "NDCG@5": 0.4281, "identity": 1.0, "users": 188, "k": 10},
            {"system": "SFT", "R@5": 0.68, "NDCG@5": 0.3962, "NDCG@5 vs pre-rank (95% CI)": "-7.5% [-14%, -1%]",
             "identity": 0.2, "users": 188, "k": 10}]
    write_report(tmp_path / "eval", "rerank-test", "Rerank on ml-100k (test)", rows, ["R@5", "NDCG@5", "identity"])
    return tmp_path


def test_section_is_the_reports_tables(run):
    body = results_markdown(run, "ml-100k-quickstart")
    assert "**Rerank on ml-100k (test)** (`eval/rerank-test.json`)" in body
    assert "| system | R@5 | NDCG@5 | NDCG@5 vs pre-rank (95% CI) | identity | users |" in body
    assert "| SFT | 0.6800 | 0.3962 | -7.5% [-14%, -1%] | 0.2000 | 188 |" in body
    with pytest.raises(DataError, match="no evaluation reports"):
        results_markdown(run / "elsewhere")


def test_only_the_text_between_the_markers_changes(run):
    text = f"# top\n\n{START}\nold figures\n{END}\n\n## after\n"
    updated = replace_section(text, "new figures")
    assert updated == f"# top\n\n{START}\nnew figures\n{END}\n\n## after\n"
    with pytest.raises(DataError, match="no results markers"):
        replace_section("# no markers\n", "x")


def test_gr2_eval_readme_writes_then_checks(run, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# gr2\n{START}\n{END}\n")
    args = ["eval", "readme", "--run", str(run), "--readme", str(readme)]
    assert CliRunner().invoke(app, [*args, "--check"]).exit_code == 1  # stale
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "0.3962" in readme.read_text()
    assert CliRunner().invoke(app, [*args, "--check"]).exit_code == 0
