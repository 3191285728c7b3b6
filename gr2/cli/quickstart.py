"""``gr2 quickstart``: the README's main job on the embedded default (MovieLens-100K)."""

from __future__ import annotations

from gr2.cli.common import console, friendly_errors


@friendly_errors
def quickstart() -> None:
    """Run the whole pipeline on MovieLens-100K with the tiny CPU model."""
    from data.prepare import PrepareConfig, load_stats, prepare
    from gr2.cli.data import show_stats

    console.rule("1. prepare MovieLens-100K")
    ds = prepare(PrepareConfig("ml-100k"))
    show_stats(load_stats(ds.path))
