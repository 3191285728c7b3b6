"""``gr2 quickstart``: the README's main job on the embedded default (MovieLens-100K, tiny model)."""

from __future__ import annotations

from pathlib import Path

from gr2.cli.common import console, friendly_errors, print_table
from gr2.cli.run_options import ForceOption, RecipeOption, RunOption, SetOption, make_pipeline


@friendly_errors
def quickstart(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
               force: bool = ForceOption) -> None:
    """prepare -> semantic IDs -> SASRec + candidates -> stages 0-2 -> evaluation, on MovieLens-100K."""
    from data.prepare import load_stats
    from gr2.cli.data import show_stats

    pipeline = make_pipeline(recipe, run, set_, force)
    show_stats(load_stats(pipeline.dataset.path))
    timings = pipeline.run()
    print_table("stage wall time (s)", list(timings.items()))
    console.print(f"run directory: {pipeline.layout.root}")
