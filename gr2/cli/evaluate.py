"""``gr2 eval rerank``: pre-rank vs each reranker on valid and test (JSON, Markdown, PNG); ``gr2 eval diagnose``:
where one reranker departs from the pre-rank order and the teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from data.errors import DataError
from gr2.cli.common import friendly_errors
from gr2.cli.run_options import RecipeOption, RunOption, SetOption, make_pipeline

app = typer.Typer(no_args_is_help=True)


@app.command("rerank")
@friendly_errors
def rerank_cmd(
    recipe: Path = RecipeOption,
    run: Path | None = RunOption,
    set_: list[str] = SetOption,
    model: list[str] = typer.Option([], help="NAME=DIR of a model to evaluate (repeatable; default: the run's "
                                             "stage 1 and SFT models)."),
) -> None:
    """Rerank metrics (conditional and end to end) and behaviour rates; writes RUN/eval/rerank-SPLIT.*."""
    models = None
    if model:
        models = {}
        for pair in model:
            name, sep, path = pair.partition("=")
            if not sep or not Path(path).is_dir():
                raise DataError(f"--model expects NAME=DIR with an existing directory, got {pair!r}")
            models[name] = Path(path)
    make_pipeline(recipe, run, set_).run_eval(models)


@app.command("diagnose")
@friendly_errors
def diagnose_cmd(
    model: str = typer.Option(..., help="NAME=DIR of the reranker to diagnose."),
    split: str = typer.Option("valid", help="Split whose users (target among the candidates) to use."),
    recipe: Path = RecipeOption,
    run: Path | None = RunOption,
    set_: list[str] = SetOption,
) -> None:
    """Where a reranker departs from the pre-rank order and from the greedy teacher: first-place changes and
    their precision, tail copying, per-position agreement; writes RUN/eval/diagnose-NAME-SPLIT.*."""
    name, sep, path = model.partition("=")
    if not sep or not Path(path).is_dir():
        raise DataError(f"--model expects NAME=DIR with an existing directory, got {model!r}")
    make_pipeline(recipe, run, set_).run_diagnose(name, Path(path), split)


@app.command("stage1")
@friendly_errors
def stage1_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption) -> None:
    """Stage 1 as a recommender: full ranking (beam search over SIDs) beside SASRec and co-occurrence, and its
    candidate-likelihood order against the pre-rank order; writes RUN/eval/stage1-{full,rerank}-SPLIT.*."""
    pipeline = make_pipeline(recipe, run, set_)
    pipeline.run_stage1_rerank_eval()
    pipeline.run_stage1_eval()


# What a benchmark's results folder keeps of a run: the reports and what is needed to check them.
EXPORTED = ("eval/*.json", "eval/*.md", "eval/*.png", "recipe.yaml", "timings.json", "manifest.json", "COMMIT",
            "stage1/selection.json", "stage1/phase-0-mixture/selection.json", "stage1/metrics.json",
            "traces/traces.summary.json", "sft/metrics.json", "rl-*/metrics.json", "rl-*/curve-*.png",
            "ranker/metrics.json", "ranker/candidates/summary.json",
            "hilight/eval/*.json", "hilight/eval/*.jsonl", "hilight/eval/*.md", "hilight/eval/*.png",
            "hilight/metrics.json", "hilight/manifest.json", "hilight/timings.json", "hilight/curve-*.png",
            "hilight/actor/actor_config.json")


@app.command("export")
@friendly_errors
def export_cmd(run: Path = typer.Option(..., "--run", help="Run directory."),
               out: Path = typer.Option(..., "--out", help="Folder to copy the results into, e.g. results/games-tiny.")
               ) -> None:
    """Copy a run's reports (eval JSON / Markdown / PNG), recipe, stage timings, selection and training metrics
    into OUT, keeping their paths, so the figures can be checked against the files that produced them."""
    import shutil

    from gr2.cli.common import console

    run = run.expanduser()
    if not (run / "recipe.yaml").is_file():
        raise DataError("not a run directory (no recipe.yaml)", run)
    copied = 0
    for pattern in EXPORTED:
        for path in sorted(run.glob(pattern)):
            target = out / path.relative_to(run)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied += 1
    console.print(f"{copied} files from {run} -> {out}")


@app.command("readme")
@friendly_errors
def readme_cmd(run: Path = typer.Option(..., "--run", help="Run directory whose eval/*.json to show."),
               readme: Path = typer.Option(Path("README.md"), help="File whose results section is replaced."),
               label: str | None = typer.Option(None, help="How the section names the run (default: its folder)."),
               check: bool = typer.Option(False, help="Write nothing; exit 1 if the section differs from the run.")
               ) -> None:
    """The README's results section from the run's evaluation JSON (between the results markers)."""
    from evals.readme import replace_section, results_markdown
    from gr2.cli.common import console

    run = run.expanduser()
    text = readme.read_text()
    updated = replace_section(text, results_markdown(run, label))
    if check:
        if updated != text:
            console.print(f"{readme}: the results section differs from {run}/eval (run without --check)")
            raise typer.Exit(1)
        return
    readme.write_text(updated)
    console.print(f"{readme}: results section written from {run}/eval")
