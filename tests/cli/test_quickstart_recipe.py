"""The quickstart's recipe: the benchmark's model and prompt shape, with what the demo does not need cut."""

from __future__ import annotations

import inspect

from gr2.cli.quickstart import quickstart
from gr2.cli.run_options import DEFAULT_RECIPE, QUICKSTART_RECIPE, load_checked_recipe


def test_quickstart_runs_its_own_fast_recipe_by_default():
    assert inspect.signature(quickstart).parameters["recipe"].default.default == QUICKSTART_RECIPE


def test_quickstart_recipe_keeps_the_benchmarks_shape_and_cuts_the_rest():
    fast, bench = load_checked_recipe(QUICKSTART_RECIPE, []), load_checked_recipe(DEFAULT_RECIPE, [])
    for same in ("dataset", "base_model", "tiny_model", "max_history", "tokenizer", "traces.heuristic", "sft.weights"):
        a, b = fast, bench
        for part in same.split("."):
            a, b = getattr(a, part), getattr(b, part)
        assert a == b, same  # the demo serves the benchmark's kind of model, on the same prompts
    assert fast.ranker.k == bench.ranker.k and fast.ranker.options["epochs"] < 50
    assert fast.midtrain.patience == 0 and fast.midtrain.training.epochs == 1  # one pass, no selection on valid
    assert fast.midtrain.phases == [] and bench.midtrain.phases
    assert fast.rl.rewards == [] and bench.rl.rewards == ["conditional"]
    assert fast.eval.splits == ["test"] and fast.eval.models == "served" and bench.eval.models == "all"
    assert not fast.eval.free_decoding_rows and not fast.eval.stage1_full_ranking
