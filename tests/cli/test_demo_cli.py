"""`gr2 demo` refuses what it cannot show, with a sentence (the browser test runs it for real)."""

from __future__ import annotations

from typer.testing import CliRunner

from gr2.cli import app


def test_demo_needs_a_run_directory(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--run", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a run directory" in result.output and "gr2 quickstart" in result.output


def test_demo_names_the_quickstart_run_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("GR2_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 2 and "ml-100k-quickstart" in result.output
