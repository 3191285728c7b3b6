"""Evaluation reports: the same table as JSON, Markdown and a PNG bar chart.

Rows are systems (pre-rank, stage 1, SFT variants, ...), columns are metrics. Everything is
written atomically into one directory so a report is either complete or absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data.artifacts import atomic_path, write_json_atomic, write_text_atomic


def markdown_table(rows: Sequence[dict], columns: Sequence[str], label: str = "system") -> str:
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join([label, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        lines.append("| " + " | ".join([cell(row.get(label, "")), *(cell(row.get(c, "")) for c in columns)]) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(path: Path, rows: Sequence[dict], columns: Sequence[str], title: str, label: str = "system") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [str(r.get(label, "")) for r in rows]
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(columns))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(columns)), 4))
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        values = [float(row.get(c, 0.0) or 0.0) for c in columns]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, columns, rotation=20, ha="right")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def write_report(out_dir: str | Path, name: str, title: str, rows: Sequence[dict], columns: Sequence[str],
                 plot_columns: Sequence[str] | None = None, extra: dict | None = None) -> dict[str, Path]:
    """``name.json``, ``name.md`` and ``name.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    write_json_atomic(paths["json"], {"title": title, "columns": list(columns), "rows": list(rows), **(extra or {})})
    write_text_atomic(paths["md"], f"# {title}\n\n" + markdown_table(rows, columns))
    bar_chart(paths["png"], rows, plot_columns or columns, title)
    return paths


def line_chart(path: Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str,
               xlabel: str = "step", ylabel: str = "") -> Path:
    """One line per named (x, y) series, written atomically as PNG (training curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), label=name, marker="." if len(x) < 40 else None)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def panel_chart(path: Path, panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], title: str,
                xlabel: str = "step") -> Path:
    """Side-by-side line charts sharing their series names (one panel per metric, one line per run), written
    atomically as PNG: several monitors of the same runs read at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (label, series) in zip(axes[0], panels.items(), strict=True):
        for name, (x, y) in series.items():
            ax.plot(list(x), list(y), label=name, marker="." if len(x) < 40 else None)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
