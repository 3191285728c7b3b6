"""The ``gr2`` command: one subcommand group per job, wiring only (the work lives in the packages)."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make torch 50x slower whenever another process (a vLLM
# server, a second job) shares the cores; sleeping waiters cost nothing when the machine is idle.
# Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from gr2.cli import bench, data, demo, evaluate, hilight, quickstart, rank, serve, tokenizer, traces, train  # noqa: E402

app = typer.Typer(
    help="GR2: semantic-ID LLM reranking for recommender systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data", help="Prepare, describe and embed datasets.")
app.add_typer(tokenizer.app, name="tokenizer", help="Semantic-ID tokenizers (RQ-KMeans, RQ-VAE).")
app.add_typer(rank.app, name="rank", help="Classical ranking stack: retrieval, SASRec, candidates.")
app.add_typer(train.app, name="train", help="Training stages of a recipe: pretrain, midtrain, sft.")
app.add_typer(traces.app, name="traces", help="Teacher traces for stage-2 SFT.")
app.add_typer(evaluate.app, name="eval", help="Evaluate rerankers against the pre-ranker.")
app.add_typer(bench.app, name="bench", help="Benchmarks that print side-by-side ratios.")
app.add_typer(hilight.app, name="hilight", help="HiLight: an emphasis actor trained against a frozen solver.")
app.command("quickstart")(quickstart.quickstart)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
