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


def test_a_taken_port_is_a_message(tmp_path):
    import socket

    (tmp_path / "recipe.yaml").write_text("dataset: ml-100k\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--run", str(tmp_path), "--server-url", "http://127.0.0.1:9",
                                          "--port", str(port)])
    assert result.exit_code == 2 and f"cannot serve the demo on 127.0.0.1:{port}" in result.output
