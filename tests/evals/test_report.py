"""Reports come out as JSON, Markdown and a real PNG with the same numbers."""

from __future__ import annotations

import json

from evals.report import markdown_table, write_report

ROWS = [{"system": "pre-rank", "R@5": 0.5, "NDCG@5": 0.25}, {"system": "sft", "R@5": 0.625, "NDCG@5": 0.3}]


def test_markdown_table():
    md = markdown_table(ROWS, ["R@5", "NDCG@5"])
    assert md.splitlines()[0] == "| system | R@5 | NDCG@5 |"
    assert "| sft | 0.6250 | 0.3000 |" in md


def test_write_report(tmp_path):
    paths = write_report(tmp_path / "eval", "rerank", "Rerank on test", ROWS, ["R@5", "NDCG@5"])
    data = json.loads(paths["json"].read_text())
    assert data["rows"] == ROWS and data["title"] == "Rerank on test"
    assert paths["md"].read_text().startswith("# Rerank on test")
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
