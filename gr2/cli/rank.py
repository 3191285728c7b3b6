"""``gr2 rank train|candidates|backends``: the classical ranking stack (logic in ``rankers/``)."""

from __future__ import annotations

from pathlib import Path

import typer

from gr2.cli.common import console, friendly_errors

app = typer.Typer(no_args_is_help=True)


def _metric_rows(metrics: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{metrics['model']} on {metrics['dataset']} (full ranking, "
                        f"train {metrics['train_seconds']:.1f} s)")
    for col in ("split", "hr@10", "ndcg@10", "hr@50", "users"):
        table.add_column(col, justify="right")
    for split in ("valid", "test"):
        m = metrics[split]
        table.add_row(split, f"{m['hr@10']:.4f}", f"{m['ndcg@10']:.4f}", f"{m['hr@50']:.4f}", f"{m['users']:,}")
    console.print(table)


@app.command("train")
@friendly_errors
def train_cmd(
    dataset: str = typer.Option(..., help="A prepared dataset's name or directory."),
    model: str = typer.Option("sasrec", help="sasrec | pop | cooc | content."),
    out: Path = typer.Option(..., help="Run directory (config.json, metrics.json, checkpoints)."),
    config: Path | None = typer.Option(None, help="YAML file of config fields (e.g. configs/rankers/sasrec.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: --set dropout=0.3 (repeatable)."),
    attention: str | None = typer.Option(None, help="SASRec attention backend: naive | sdpa | flash_attn | triton."),
    epochs: int | None = typer.Option(None, help="SASRec maximum epochs."),
    device: str | None = typer.Option(None, help="SASRec device (cpu, cuda)."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a ranker and evaluate it with full ranking (valid and test HR@10, NDCG@10, HR@50)."""
    from data.configs import apply_sets, parse_sets
    from rankers.attention import check_backend
    from rankers.run import load_config_file, train_run

    values = apply_sets(load_config_file(config) if config else {}, parse_sets(set_))
    for key, value in (("attention", attention), ("epochs", epochs), ("device", device)):
        if value is not None:
            values[key] = value
    if model == "sasrec":
        check_backend(values.get("attention", "sdpa"), values.get("device", "cpu"))
    metrics = train_run(dataset, model, out, values, resume=resume)
    _metric_rows(metrics)
    if "best_epoch" in metrics:
        console.print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} ({metrics['stopped']}); "
                      f"{metrics['seconds_to_best']:.1f} s to the best epoch")
    console.print(f"-> {out / 'metrics.json'}")


@app.command("candidates")
@friendly_errors
def candidates_cmd(
    run: Path = typer.Option(..., help="A run directory written by `gr2 rank train`."),
    k: int = typer.Option(10, help="Candidates per user."),
    folds: int = typer.Option(2, help="Cross-fitting folds for the train split (>= 2)."),
    train_cuts: int = typer.Option(1, help="Train-split examples per user (targets seq[-3], seq[-4], ...)."),
) -> None:
    """Write per-user top-K candidates (train / valid / test Parquet) and each split's candidate recall."""
    from rankers.candidates import generate_candidates

    summary = generate_candidates(run, k=k, folds=folds, train_cuts=train_cuts)
    from gr2.cli.common import print_table

    print_table(f"candidate recall@{k} ({summary['model']} on {summary['dataset']})",
                [(split, f"{summary['recall'][split]:.4f} of {summary['rows'][split]:,} rows "
                           f"({summary['users'][split]:,} users)")
                 for split in ("train", "valid", "test")])
    console.print(f"train split: {summary['train_split']}")
    console.print(f"-> {run / 'candidates'}")


@app.command("backends")
def backends_cmd(device: str = typer.Option("cpu", help="cpu or cuda.")) -> None:
    """List the attention backends that can run on this device."""
    import torch

    from rankers.attention import BACKENDS, _why_unavailable

    for name in BACKENDS:
        why = _why_unavailable(name, torch.device(device))
        console.print(f"{name:11s} {'available' if why is None else 'unavailable: ' + why}")
