"""The ``gr2 data`` commands as a user runs them: output, exit codes, error messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from gr2.cli import app

runner = CliRunner()


def test_prepare_and_stats(recbole_dir):
    result = runner.invoke(app, ["data", "prepare", str(recbole_dir), "--name", "cli-tiny"])
    assert result.exit_code == 0, result.output
    assert "cli-tiny" in result.output and "interactions" in result.output
    result = runner.invoke(app, ["data", "stats", "cli-tiny"])
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.output.splitlines() if line.count("│") == 3}
    assert (rows["users"], rows["items"], rows["interactions"]) == ("4", "5", "11")


def test_bad_file_exits_2_with_location(recbole_dir):
    inter = recbole_dir / "tiny.inter"
    inter.write_text(inter.read_text() + "u9\tzzz\n")
    result = runner.invoke(app, ["data", "prepare", str(recbole_dir), "--name", "cli-bad"])
    assert result.exit_code == 2
    assert "tiny.inter:13" in result.output and "expected 4 tab-separated fields" in result.output
    assert "Traceback" not in result.output


def test_unknown_dataset():
    result = runner.invoke(app, ["data", "stats", "does-not-exist"])
    assert result.exit_code == 2 and "is not prepared" in result.output


def test_entry_points_installed():
    console_script = Path(sys.executable).with_name("gr2")
    for cmd in ([str(console_script), "--help"], [sys.executable, "-m", "gr2.cli", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        for group in ("data", "tokenizer", "rank", "bench", "quickstart"):
            assert group in out.stdout
