"""``gr2 tokenizer fit|report|ablation``: wiring only; the work lives in ``tokenizer/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gr2.cli.common import console, friendly_errors, print_table

app = typer.Typer(no_args_is_help=True)


def _load_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    from data.errors import DataError

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read config ({exc})", path) from None
    if not isinstance(loaded, dict):
        raise DataError("config must be a mapping of option: value", path)
    return loaded


def show_report(report: dict[str, Any], title: str) -> None:
    print_table(title, [
        ("dataset", report.get("dataset", "-")),
        ("method", report["method"]),
        ("items", report["items"]),
        ("levels x codebook size", f"{report['levels']} x {report['codebook_size']}"
                                    + (f" + de-dup ({report['dedup_size']})" if report.get("dedup_level") else "")),
        ("distinct embeddings (deterministic ceiling)", f"{report['distinct_embeddings']:.2%}"
         if "distinct_embeddings" in report else "-"),
        ("uniqueness before de-dup", f"{report['uniqueness_before_dedup']:.2%}"),
        ("uniqueness", f"{report['uniqueness']:.2%}"),
        ("largest collision group", report["largest_collision_group"]),
        ("utilization per level", " / ".join(f"{u:.2%}" for u in report["utilization"])),
        ("prefix uniqueness per level", " / ".join(f"{u:.2%}" for u in report["prefix_uniqueness"])),
        ("same-first-code cosine / random pairs",
         f"{report['same_first_code_cosine']:.3f} / {report['random_pair_cosine']:.3f}"),
        ("reconstruction cosine", report["reconstruction_cosine"]),
        ("fit seconds", report["fit_seconds"]),
    ])


@app.command("fit")
@friendly_errors
def fit_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A prepared dataset's name or directory."),
    method: str = typer.Option("rq-vae", help="rq-kmeans | rq-vae."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (replaced atomically)."),
    levels: int | None = typer.Option(None, help="Quantization levels (default: 3)."),
    codebook_size: int | None = typer.Option(None, help="Codes per level (default: from the catalogue size)."),
    seed: int = typer.Option(0),
    epochs: int | None = typer.Option(None, help="RQ-VAE training epochs."),
    ema: bool | None = typer.Option(None, "--ema/--no-ema", help="RQ-VAE: EMA codebook updates."),
    random_last: bool | None = typer.Option(None, "--random-last/--no-random-last",
                                            help="RQ-VAE: draw the last level's code at random (GR2)."),
    balanced: bool | None = typer.Option(None, "--balanced/--no-balanced", help="RQ-KMeans: balanced clusters."),
    config: Path | None = typer.Option(None, help="YAML file of quantizer options (flags override it)."),
) -> None:
    """Fit a semantic-ID tokenizer; writes the model, the catalogue's IDs and DIR/report.json."""
    from tokenizer.fit import fit_dataset

    options = _load_yaml(config)
    flags = {"levels": levels, "codebook_size": codebook_size, "epochs": epochs, "ema": ema,
             "random_last_level": random_last, "balanced": balanced}
    options.update({k: v for k, v in flags.items() if v is not None})
    options["seed"] = seed
    outcome = fit_dataset(dataset, method, out, **options)
    show_report(outcome.report, f"tokenizer {method} -> {out}")


@app.command("report")
@friendly_errors
def report_cmd(directory: Path = typer.Argument(..., help="A `gr2 tokenizer fit` output directory.")) -> None:
    """Print a fitted tokenizer's report.json as a table."""
    from tokenizer.fit import load_report

    show_report(load_report(directory), f"tokenizer {directory}")


@app.command("ablation")
@friendly_errors
def ablation_cmd(
    dataset: str = typer.Option(..., "--dataset", "-d"),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for ablation.json / ablation.md."),
    seed: int = typer.Option(0),
    epochs: int | None = typer.Option(None, help="RQ-VAE training epochs."),
) -> None:
    """GR2's ablation: RQ-KMeans; RQ-VAE without EMA; with EMA; with EMA + random last level."""
    from tokenizer.ablation import ablation_markdown, ablation_to_dir

    rows = ablation_to_dir(dataset, out, seed=seed, **({"epochs": epochs} if epochs else {}))
    typer.echo(ablation_markdown(rows, f"Tokenizer ablation on {dataset}"))  # plain text: wide tables stay intact
    console.print(f"-> {out}")
