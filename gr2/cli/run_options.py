"""Options every recipe-driven command shares: --recipe, --run, --set, --force."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from data.artifacts import gr2_home
from data.errors import DataError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_RECIPE = CONFIGS / "ml-100k-tiny.yaml"

RecipeOption = typer.Option(DEFAULT_RECIPE, "--recipe", help="Recipe YAML (see configs/).")
RunOption = typer.Option(None, "--run", help="Run directory (default: $GR2_HOME/runs/<recipe name>).")
SetOption = typer.Option([], "--set", help="Override a recipe field: --set sft.training.epochs=1 (repeatable).")
ForceOption = typer.Option(False, "--force", help="Redo stages whose output already exists.")


def parse_sets(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DataError(f"--set expects dotted.key=value, got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def make_pipeline(recipe: Path, run: Path | None, sets: list[str], force: bool = False):
    from gr2.cli.pipeline import Pipeline
    from gr2.config import load_recipe

    loaded = load_recipe(recipe, parse_sets(sets))
    run = run or gr2_home() / "runs" / recipe.stem
    saved = Path(run) / "recipe.yaml"  # a run made from another data set would fail deep inside a stage
    if saved.is_file():
        made_with = (yaml.safe_load(saved.read_text()) or {}).get("dataset")
        if made_with and made_with != loaded.dataset:
            raise DataError(f"run {run} was made on {made_with!r}, but recipe {recipe} is for {loaded.dataset!r}; "
                            f"pass --recipe {saved} (or the recipe it came from)")
    return Pipeline(loaded, run, force=force)
