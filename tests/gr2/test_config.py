"""Recipe YAML: partial sections keep their stage's defaults, typos are errors, overrides apply."""

from __future__ import annotations

import pytest

from data.errors import DataError
from gr2.config import Recipe, from_dict, load_recipe

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"


def test_partial_section_keeps_stage_defaults():
    recipe = from_dict(Recipe, {"sft": {"training": {"epochs": 1}}, "midtrain": {"lora": {"r": 8}}})
    assert recipe.sft.training.epochs == 1.0
    assert recipe.sft.training.learning_rate == Recipe().sft.training.learning_rate == 5e-4
    assert recipe.midtrain.lora.r == 8 and recipe.midtrain.lora.alpha == 32
    assert recipe.pretrain == Recipe().pretrain


def test_unknown_key_lists_valid_ones(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("sft:\n  trainng:\n    epochs: 1\n")
    with pytest.raises(DataError, match=r"sft: unknown key\(s\) \['trainng'\]; valid keys: .*'training'"):
        load_recipe(path)
    path.write_text("sft: [1, 2\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_recipe(path)


def test_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("dataset: games\n")
    recipe = load_recipe(path, {"sft.training.max_steps": 5, "traces.trace.mode": "targeted"})
    assert (recipe.dataset, recipe.sft.training.max_steps, recipe.traces.trace.mode) == ("games", 5, "targeted")


@pytest.mark.parametrize("name", sorted(p.name for p in REPO_CONFIGS.glob("*.yaml")))
def test_shipped_recipes_load(name):
    load_recipe(REPO_CONFIGS / name)


def test_ranker_config_resolves_next_to_the_recipe():
    recipe = load_recipe(REPO_CONFIGS / "ml-100k-tiny.yaml")
    assert recipe.ranker.config and __import__("pathlib").Path(recipe.ranker.config).is_file()


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("sft:\n  training:\n    learning_rate: 5e-5\n")  # YAML 1.1 reads this as a string
    assert load_recipe(path).sft.training.learning_rate == 5e-5
    path.write_text("sft:\n  training:\n    learning_rate: fast\n")
    with pytest.raises(DataError, match=r"sft.training.learning_rate: expected a number, got 'fast'"):
        load_recipe(path)


def test_rl_dapo_section_is_typed():
    from rl.dapo import DAPOConfig

    config = from_dict(DAPOConfig, {"learning_rate": "5e-5", "max_steps": 3}, "rl.dapo")
    assert config.learning_rate == 5e-5 and config.max_steps == 3
    with pytest.raises(DataError, match=r"rl.dapo: unknown key\(s\) \['max_step'\]"):
        from_dict(DAPOConfig, {"max_step": 3}, "rl.dapo")


def test_training_settings_reach_trl(tmp_path):
    from gr2.recipes.common import sft_config

    recipe = load_recipe("configs/ml-100k-tiny.yaml", {"midtrain.training.lr_scheduler": "constant_with_warmup",
                                                       "midtrain.training.sampling": "group_by_length"})
    args = sft_config(tmp_path, recipe.midtrain.training)
    assert args.lr_scheduler_type == "constant_with_warmup" and args.train_sampling_strategy == "group_by_length"
