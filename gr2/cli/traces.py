"""``gr2 traces generate``: teacher traces (targeted or rejection-sampled) for stage 2."""

from __future__ import annotations

from pathlib import Path

import typer

from gr2.cli.common import friendly_errors
from gr2.cli.run_options import ForceOption, RecipeOption, RunOption, SetOption, make_pipeline

app = typer.Typer(no_args_is_help=True)


@app.command("generate")
@friendly_errors
def generate_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
                 force: bool = ForceOption) -> None:
    """Ask the recipe's teacher about train-split candidates; write RUN/traces/traces.jsonl + summary."""
    make_pipeline(recipe, run, set_, force).run(["traces"])
