"""``gr2 bench ...``: benchmarks that measure side by side in one run and print ratios.

Each command is wiring only; the measurement lives with the code it measures
(``tokenizer/bench.py``, ``rankers/bench.py``, ...).
"""

from __future__ import annotations

from pathlib import Path

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


@app.command("serve")
def serve_bench_cmd(
    run: Path | None = typer.Option(None, help="A run directory; default: an untrained model of the recipe's "
                                               "tiny size on ML-100K (built once)."),
    model: Path | None = typer.Option(None, help="Model to serve (default: the run's best, or the built one)."),
    concurrency: str = typer.Option("1,8,32", help="Concurrent clients, comma separated."),
    seconds: float = typer.Option(20.0, help="Closed-loop time per concurrency level and engine."),
    max_new_tokens: int = typer.Option(64, help="Every answer is exactly this long on both engines."),
    engines: str = typer.Option("vllm,transformers", help="Engines to measure, comma separated."),
    out: Path | None = typer.Option(None, help="Report directory (default $GR2_HOME/bench/serve)."),
) -> None:
    """Requests/s and p50/p99 latency of `gr2 serve` on vLLM vs plain transformers generate, same prompts."""
    from rich.table import Table

    from gr2.cli.common import console, friendly_errors
    from serving.bench import bench_serve

    levels = [int(c) for c in concurrency.split(",") if c]
    report = friendly_errors(bench_serve)(run, model, out, levels, seconds, max_new_tokens,
                                          [e for e in engines.split(",") if e],
                                          progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    table = Table(title="gr2 serve: vLLM vs transformers generate (10 candidates per request)")
    columns = ["req/s", "p50 ms", "p99 ms", "prompt tokens", "tokens/answer", "mean batch", "errors", "load avg"]
    for col in ("system", *columns):
        table.add_column(col, justify="left" if col == "system" else "right")
    for row in report["rows"]:
        table.add_row(row["system"], *["-" if row.get(c) is None else str(row[c]) for c in columns])
    console.print(table)
    console.print(report["note"], soft_wrap=True)
    for level, ratio in report["ratios"].items():
        console.print(f"vLLM / transformers throughput at concurrency {level}: {ratio}x")
    console.print(f"-> {report['paths']['json']}, {report['paths']['md']}")


@app.command("load")
def load_bench_cmd(
    run: Path = typer.Option(..., help="The run to serve (gr2 serve --run DIR)."),
    clients: int = typer.Option(64, help="Concurrent closed-loop clients."),
    seconds: float = typer.Option(60.0, help="How long to send requests."),
    url: str | None = typer.Option(None, help="Load an already running server instead of starting one."),
    out: Path | None = typer.Option(None, help="JSON report (default RUN/bench/load.json)."),
    model: Path | None = typer.Option(None, help="Model to serve (gr2 serve --model; default: the run's best)."),
    timeout_s: float = typer.Option(30.0, help="The server's per-request deadline (--timeout-s of gr2 serve)."),
    max_in_flight: int | None = typer.Option(None, help="gr2 serve --max-in-flight (default: gr2 serve's)."),
    max_queue: int | None = typer.Option(None, help="gr2 serve --max-queue (default: gr2 serve's)."),
    max_queue_wait_s: float | None = typer.Option(None, help="gr2 serve --max-queue-wait-s (default: gr2 serve's)."),
) -> None:
    """Soak test: CLIENTS concurrent clients for SECONDS; errors counted, every answer checked as a permutation,
    load refusals (429/503 with Retry-After) counted with their latency."""
    from gr2.cli.common import console, friendly_errors, print_table
    from serving.bench import bench_load

    serve_args = ["--timeout-s", str(timeout_s)]
    for flag, value in (("--model", model), ("--max-in-flight", max_in_flight), ("--max-queue", max_queue),
                        ("--max-queue-wait-s", max_queue_wait_s)):
        if value is not None:
            serve_args += [flag, str(value)]
    report = friendly_errors(bench_load)(run, clients, seconds, url, out, serve_args,
                                         progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    refusals = {code: report["status"].get(code, 0) for code in ("429", "503")}
    print_table(f"load: {clients} clients, {report['seconds']} s", [
        ("requests answered (200)", report["ok"]), ("errors (other non-200, failed connections)", report["errors"]),
        ("5xx responses", report["server_errors"]),
        ("invalid answers (not a permutation)", report["invalid"]), ("fallback answers (pre-rank order)",
                                                                     report["fallback"]),
        ("repaired answers", report["repaired"]), ("requests/s", report["requests_per_second"]),
        ("p50 / p99 ms (answered)", f"{report['p50_ms']} / {report['p99_ms']}"),
        ("refused: 429 / 503", f"{refusals['429']} / {refusals['503']}"),
        ("refused p50 / p99 / max ms", f"{report['refused_p50_ms']} / {report['refused_p99_ms']} / "
                                       f"{report['refused_max_ms']}"),
        ("mean Retry-After s", report["mean_retry_after_s"]),
        ("load average before / after", f"{report['load_average_before']} / {report['load_average_after']}"),
    ])
    for problem in report["problems"]:
        console.print(f"[red]{problem}[/]", markup=True, highlight=False, soft_wrap=True)
    console.print(f"-> {report['path']}")
    if report["errors"] or report["invalid"] or report["server_errors"]:
        raise typer.Exit(1)
