"""Recipe YAML: validated whole when loaded; partial sections keep their stage's defaults, typos and wrong
types at any depth are errors naming the key's path, overrides apply."""

from __future__ import annotations

import pytest

from data.configs import build_config
from data.errors import ConfigError, DataError
from gr2.config import Recipe, load_recipe

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"


def test_partial_section_keeps_stage_defaults():
    recipe = build_config(Recipe, {"sft": {"training": {"epochs": 1}}, "midtrain": {"lora": {"r": 8}}})
    assert recipe.sft.training.epochs == 1.0
    assert recipe.sft.training.learning_rate == Recipe().sft.training.learning_rate == 5e-4
    assert recipe.midtrain.lora.r == 8 and recipe.midtrain.lora.alpha == 32
    assert recipe.pretrain == Recipe().pretrain


def test_unknown_key_lists_valid_ones(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("sft:\n  trainng:\n    epochs: 1\n")
    with pytest.raises(ConfigError, match=r"sft.trainng: unknown key \(sft has: .*training"):
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
    with pytest.raises(ConfigError, match=r"sft.training.learning_rate: .*valid number.*got 'fast'"):
        load_recipe(path)


def test_rl_dapo_section_is_typed():
    from rl.config import dapo_config

    config = dapo_config({"learning_rate": "5e-5", "max_steps": 3}, seed=7, reward="naive")
    assert (config.learning_rate, config.max_steps, config.seed, config.reward) == (5e-5, 3, 7, "naive")
    with pytest.raises(ConfigError, match=r"rl.dapo.max_step: unknown key \(rl.dapo has: .*max_steps"):
        dapo_config({"max_step": 3})


def test_training_settings_reach_trl(tmp_path):
    from gr2.recipes.common import sft_config

    recipe = load_recipe("configs/ml-100k-tiny.yaml", {"midtrain.training.lr_scheduler": "constant_with_warmup",
                                                       "midtrain.training.sampling": "group_by_length"})
    args = sft_config(tmp_path, recipe.midtrain.training)
    assert args.lr_scheduler_type == "constant_with_warmup" and args.train_sampling_strategy == "group_by_length"


def checked(tmp_path, text: str, sets: list[str] = ()):
    """What every recipe-driven command loads (gr2/cli/run_options.py): gr2's sections plus ranker and rl.dapo."""
    from gr2.cli.run_options import load_checked_recipe

    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_checked_recipe(path, list(sets))


@pytest.mark.parametrize(("text", "message"), [
    ("datset: games\n", r"datset: unknown key \(the top level has: answer_format, base_model, dataset"),
    ("sft:\n  training:\n    epocs: 1\n", r"sft.training.epocs: unknown key \(sft.training has: .*epochs"),
    ("midtrain:\n  phases: [{name: a}, {name: b, trainig: {}}]\n",
     r"midtrain.phases\[1\].trainig: unknown key \(midtrain.phases\[1\] has: .*training"),
    ("rl:\n  dapo: {learning_rat: 0.00001}\n", r"rl.dapo.learning_rat: unknown key \(rl.dapo has: .*learning_rate"),
    ("rl:\n  dapo: {grpo: {max_grad_nrm: 1}}\n", r"rl.dapo.grpo.max_grad_nrm: not a field of TRL's GRPOConfig"),
    ("ranker:\n  options: {hiden: 32}\n", r"ranker.options.hiden: unknown key \(ranker.options has: .*hidden"),
    ("tokenizer:\n  options: {nitr: 3}\n", r"tokenizer.options.nitr: unknown key \(tokenizer.options has: .*niter"),
])
def test_typos_at_any_depth_fail_at_load_naming_the_path(tmp_path, text, message):
    import time

    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as err:
        checked(tmp_path, text)
    assert err.value.path == str(tmp_path / "r.yaml")
    assert time.perf_counter() - start < 10  # at load, not when the stage starts (generous: a busy CPU)


@pytest.mark.parametrize(("text", "message"), [
    ("seed: zero\n", r"seed: .*valid integer.*got 'zero'"),
    ("sft: 5\n", r"sft: .*dictionary.*got 5"),
    ("sft:\n  training: {batch_size: 0}\n", r"sft.training.batch_size: .*greater than or equal to 1, got 0"),
    ("sft:\n  training: {learning_rate: -0.1}\n", r"sft.training.learning_rate: .*greater than 0"),
    ("traces:\n  teacher: gpt\n", r"traces.teacher: .*'heuristic', 'openai' or 'hf', got 'gpt'"),
    ("rl:\n  rewards: [conditional, nave]\n", r"rl.rewards\[1\]: .*'conditional' or 'naive', got 'nave'"),
    ("rl:\n  dapo: {epsilon: 1.5}\n", r"rl.dapo.epsilon: .*less than 1, got 1.5"),
    ("rl:\n  dapo: {grpo: {max_grad_norm: big}}\n", r"rl.dapo.grpo.max_grad_norm: .*valid number.*got 'big'"),
    ("rl:\n  dapo: {grpo: {beta: 0.1}}\n", r"rl.dapo.grpo.beta: set by the DAPO recipe; fixed"),
    ("rl:\n  dapo: {use_vllm: true}\n", r"rl.dapo: use_vllm: true cannot apply rollout_constraint 'permutation'"),
    ("ranker:\n  options: {dropout: high}\n", r"ranker.options.dropout: .*valid number.*got 'high'"),
])
def test_wrong_types_and_ranges_fail_at_load(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        checked(tmp_path, text)


def test_every_problem_of_a_section_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        checked(tmp_path, "sft:\n  trainng: {}\n  training: {batch_size: 0}\n  weights: {ranking: x}\n")
    lines = err.value.message.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["sft.training.batch_size", "sft.trainng",
                                                            "sft.weights.ranking"]


def test_grpo_passes_any_other_grpo_field_through(tmp_path):
    from rl.config import dapo_config
    from rl.dapo import grpo_config

    recipe = checked(tmp_path, "rl:\n  dapo: {grpo: {scale_rewards: batch, max_grad_norm: '0.5', num_iterations: 2}}\n")
    config = dapo_config(recipe.rl.dapo)
    assert config.grpo == {"scale_rewards": "batch", "max_grad_norm": 0.5, "num_iterations": 2}
    args = grpo_config(tmp_path / "out", config)
    assert (args.scale_rewards, args.max_grad_norm, args.num_iterations, args.loss_type) == ("batch", 0.5, 2, "dapo")


def test_set_overrides_are_validated_like_the_file(tmp_path):
    recipe = checked(tmp_path, "dataset: games\n", ["sft.training.max_steps=5", "rl.dapo.max_steps=3",
                                                     "midtrain.phases=[{name: warm, num_examples: 8}]"])
    assert (recipe.sft.training.max_steps, recipe.rl.dapo, recipe.midtrain.phases[0].num_examples) == (
        5, {"max_steps": 3}, 8)
    assert recipe.midtrain.phases[0].training.max_steps == -1  # the phase's own defaults
    with pytest.raises(ConfigError, match=r"sft.training.max_step: unknown key"):
        checked(tmp_path, "dataset: games\n", ["sft.training.max_step=5"])
    with pytest.raises(ConfigError, match=r"--set expects dotted.key=value, got 'sft'"):
        checked(tmp_path, "dataset: games\n", ["sft"])
    with pytest.raises(ConfigError, match=r"--set sft.training.epochs: sft is 3, not a section"):
        checked(tmp_path, "sft: 3\n", ["sft.training.epochs=1"])


@pytest.mark.parametrize("name", sorted(p.relative_to(REPO_CONFIGS).as_posix()
                                        for p in REPO_CONFIGS.glob("*/*.yaml") if p.parent.name != "accelerate"))
def test_shipped_ranker_and_tokenizer_configs_validate(name):
    from rankers.run import load_config_file, make_config
    from tokenizer.registry import make_quantizer

    values = load_config_file(REPO_CONFIGS / name)
    if name.startswith("rankers/"):
        make_config("sasrec", values)
    else:
        make_quantizer(name.split("/")[1].removesuffix(".yaml"), **values)


def test_lora_on_new_token_rows_refuses_whole_embedding_modules():
    """trainable_tokens: new trains the added rows only; modules_to_save: [embed_tokens] would train all of them."""
    with pytest.raises(ConfigError, match="midtrain.lora.*drop embed_tokens"):
        load_recipe("configs/games-gemma-270m.yaml", {"midtrain.lora.modules_to_save": ["embed_tokens"]})
    recipe = load_recipe("configs/games-gemma-270m.yaml")
    assert recipe.base_model == "gemma3-270m" and recipe.midtrain.lora.trainable_tokens == "new"
    assert recipe.rl.dapo["rollout_constraint"] == "none" and recipe.rl.rewards == ["naive", "conditional"]


def test_a_model_trained_without_reasoning_must_be_decoded_without(tmp_path):
    from gr2.cli.run_options import load_checked_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("sft: {reasoning: false}\neval: {generation: {max_reasoning_tokens: 0}}\n"
                      "rl: {dapo: {max_reasoning_tokens: 0}}\n")
    assert load_checked_recipe(recipe, []).sft.reasoning is False
    with pytest.raises(ConfigError, match=r"rl\.dapo\.max_reasoning_tokens must be 0"):
        load_checked_recipe(recipe, ["rl.dapo.max_reasoning_tokens=8"])


def test_sft_answers_without_reasoning_keep_the_ranking():
    from gr2.recipes.sft import without_reasoning
    from gr2.rerank_format import format_answer

    answer = format_answer("The best fit is Heat (1995).", ["2", "1"])
    assert without_reasoning(answer) == format_answer("", ["2", "1"])
