"""``gr2 bench ...``: benchmarks that measure side by side in one run and print ratios.

Each command is wiring only; the measurement lives with the code it measures
(``tokenizer/bench.py``, ``rankers/bench.py``, ...).
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("tokenizer")
def tokenizer_bench_cmd(
    dataset: str = typer.Option("games", "--dataset", "-d", help="A prepared dataset's name or directory."),
    threads: int = typer.Option(2, help="CPU threads for torch and faiss."),
    out: str | None = typer.Option(None, help="JSON output (default $GR2_HOME/bench/tokenizer-DATASET.json)."),
    epochs: int | None = typer.Option(None, help="RQ-VAE training epochs (default: the config's)."),
) -> None:
    """Fit time of each semantic-ID quantizer on one dataset, pinned to THREADS cores."""
    from gr2.cli.common import console, friendly_errors
    from tokenizer.bench import bench_tokenizer

    report = friendly_errors(bench_tokenizer)(dataset, threads=threads, out=out,
                                              **({"epochs": epochs} if epochs else {}))
    from rich.table import Table

    table = Table(title=f"tokenizer fit time on {dataset} ({report['items']:,} items, {threads} threads)")
    for col in ("variant", "levels x K", "fit s", "unique before de-dup"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in report["results"]:
        table.add_row(r["variant"], f"{r['levels']} x {r['codebook_size']}", f"{r['fit_seconds']:.1f}",
                      f"{r['uniqueness_before_dedup']:.2%}")
    console.print(table)
    console.print(f"-> {report['path']}")
