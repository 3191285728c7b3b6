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
    load = report["load_average_1min"]
    console.print(f"load average (1 min) before / after: {load['before']:.2f} / {load['after']:.2f} "
                  f"on {report['cpu_count']} CPUs")
    console.print(f"-> {report['path']}")


@app.command("attention")
def attention_bench_cmd(
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    repeats: int = typer.Option(7, help="Timed repeats per backend and shape (the best is reported)."),
    shapes: str = typer.Option("128x50x2x32,128x200x2x32,32x512x2x32",
                               help="Attention shapes batch x length x heads x head_dim, comma separated."),
    steps: str = typer.Option("128x50,128x200", help="SASRec training-step shapes batch x length."),
    out: str | None = typer.Option(None, help="Also write the figures as JSON here."),
) -> None:
    """Forward+backward time of every available attention backend, and SASRec training-step seq/s, vs naive."""
    from rich.table import Table

    from data.artifacts import write_json_atomic
    from gr2.cli.common import console, friendly_errors
    from rankers.bench import BenchConfig, bench_attention

    def parse(text: str, n: int) -> list[tuple[int, ...]]:
        parsed = [tuple(int(v) for v in s.split("x")) for s in text.split(",") if s]
        if any(len(p) != n for p in parsed):
            raise typer.BadParameter(f"expected {n} numbers joined by 'x' per shape, got {text!r}")
        return parsed

    cfg = BenchConfig(shapes=parse(shapes, 4), step_shapes=parse(steps, 2), repeats=repeats, device=device,
                      threads=threads)
    report = friendly_errors(bench_attention)(cfg, progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    backends = list(report["attention"][0]["seconds"]) if report["attention"] else ["naive"]
    table = Table(title=f"attention forward+backward on {device} ({threads} threads, best of {repeats})")
    for col in ("batch x length x heads x dim", *[f"{b} ms (x naive)" for b in backends]):
        table.add_column(col, justify="right")
    for row in report["attention"]:
        table.add_row(f"{row['batch']} x {row['length']} x {row['heads']} x {row['head_dim']}",
                      *[f"{row['seconds'][b] * 1e3:.1f} ({row['speedup_vs_naive'][b]:.2f}x)" for b in backends])
    console.print(table)
    table = Table(title=f"SASRec training step (hidden 64, 2 blocks, 2 heads, {cfg.num_items} items)")
    for col in ("batch x length", *[f"{b} seq/s (x naive)" for b in backends]):
        table.add_column(col, justify="right")
    for row in report["train_step"]:
        table.add_row(f"{row['batch']} x {row['length']}",
                      *[f"{row['seqs_per_second'][b]:.0f} ({row['speedup_vs_naive'][b]:.2f}x)" for b in backends])
    console.print(table)
    for name, why in report["unavailable"].items():
        console.print(f"{name}: not measured ({why})")
    if out:
        console.print(f"-> {write_json_atomic(out, report)}")
