"""``gr2 train pretrain|midtrain|sft|rl``: one training stage of a recipe (earlier stages must be done).

Each goes through ``Pipeline.run``, so the run directory gets the recipe, timings and manifest.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gr2.cli.common import friendly_errors
from gr2.cli.run_options import ForceOption, RecipeOption, RunOption, SetOption, make_pipeline

app = typer.Typer(no_args_is_help=True)


def _stage(name: str, doc: str):
    @friendly_errors
    def command(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
                force: bool = ForceOption) -> None:
        make_pipeline(recipe, run, set_, force).run([name])

    command.__doc__ = doc
    app.command(name)(command)


_stage("pretrain", "Stage 0: language-model pretraining of the tiny base model on item text.")
_stage("midtrain", "Stage 1: mid-training on SID <-> text and history -> next-SID tasks.")
_stage("sft", "Stage 2: SFT on teacher traces (reasoning weighted lambda_r, ranking lambda_o).")


@app.command("rl")
@friendly_errors
def rl_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
           force: bool = ForceOption,
           reward: list[str] = typer.Option([], help="conditional | naive (repeatable; default: recipe's).")) -> None:
    """Stage 3: DAPO from the SFT model with GR2's conditional (or the naive) reward; RUN/rl-REWARD/."""
    make_pipeline(recipe, run, set_, force).run(["rl"], rl_rewards=reward or None)
