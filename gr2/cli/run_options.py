"""Options every recipe-driven command shares: --recipe, --run, --set, --force."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from data.artifacts import gr2_home
from data.configs import parse_sets
from data.errors import ConfigError, DataError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_RECIPE = CONFIGS / "ml-100k-tiny.yaml"
QUICKSTART_RECIPE = CONFIGS / "ml-100k-quickstart.yaml"  # `gr2 quickstart`: the demo's fast cut of the above

RecipeOption = typer.Option(DEFAULT_RECIPE, "--recipe", help="Recipe YAML (see configs/).")
RunOption = typer.Option(None, "--run", help="Run directory (default: $GR2_HOME/runs/<recipe name>).")
SetOption = typer.Option([], "--set", help="Override a recipe field: --set sft.training.epochs=1 (repeatable).")
ForceOption = typer.Option(False, "--force", help="Redo stages whose output already exists.")


def load_checked_recipe(recipe: Path, sets: list[str]):  # noqa: ANN201 - a gr2.config.Recipe
    """The recipe with ``--set`` overrides, every section validated now: ``load_recipe`` checks what ``gr2``
    owns, this adds the sections of layers ``gr2`` may not import (the ranker's config, ``rl.dapo``,
    ``hilight``), so a typo anywhere fails in the first seconds with its key's path, not when its stage starts."""
    from gr2.config import load_recipe
    from hilight.config import hilight_config
    from rankers.run import load_config_file, make_config
    from rl.config import dapo_config

    loaded = load_recipe(recipe, parse_sets(sets))
    try:
        section = loaded.ranker
        make_config(section.model, {**(load_config_file(section.config) if section.config else {}), **section.options},
                    where="ranker.options")
        for reward in loaded.rl.rewards:
            dapo_config(loaded.rl.dapo, seed=loaded.seed, reward=reward)
        hilight_config(loaded.hilight)
        check_reasoning_budget(loaded)
    except DataError as exc:  # a ranker config file names itself; the rest is the recipe's
        raise ConfigError(exc.message, exc.path or recipe, exc.line) from None
    return loaded


def check_reasoning_budget(loaded) -> None:  # noqa: ANN001 - a gr2.config.Recipe
    """A model trained without reasoning (``sft.reasoning: false``) must be decoded that way everywhere: a
    reasoning it never learned to write would steer its ranking."""
    if loaded.sft.reasoning:
        return
    budgets = {"eval.generation.max_reasoning_tokens": loaded.eval.generation.max_reasoning_tokens,
               "rl.dapo.max_reasoning_tokens": loaded.rl.dapo.get("max_reasoning_tokens", 64)}
    solver = (loaded.hilight.get("solver") or {}).get("generation") or {}
    if loaded.hilight:
        budgets["hilight.solver.generation.max_reasoning_tokens"] = solver.get("max_reasoning_tokens", 160)
    wrong = [key for key, value in budgets.items() if value != 0]
    if wrong:
        raise DataError(f"sft.reasoning is false, so {', '.join(wrong)} must be 0 (the model answers without "
                        "reasoning)")


def make_pipeline(recipe: Path, run: Path | None, sets: list[str], force: bool = False):
    from gr2.cli.pipeline import Pipeline

    loaded = load_checked_recipe(recipe, sets)
    run = run or gr2_home() / "runs" / recipe.stem
    saved = Path(run) / "recipe.yaml"  # a run made from another data set would fail deep inside a stage
    if saved.is_file():
        made_with = (yaml.safe_load(saved.read_text()) or {}).get("dataset")
        if made_with and made_with != loaded.dataset:
            raise DataError(f"run {run} was made on {made_with!r}, but recipe {recipe} is for {loaded.dataset!r}; "
                            f"pass --recipe {saved} (or the recipe it came from)")
    return Pipeline(loaded, run, force=force)
