"""DAPO stage: reward adapter, dynamic sampling on TRL's real GRPOTrainer, a short RL run."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from gr2.rerank_format import format_answer
from rl.dapo import DAPOConfig, check_completion_budget, compare_reward_curves, rl_dataset, train_rl
from rl.dynamic_sampling import DynamicSamplingGRPOTrainer, informative_groups, prefix_through, refill_order
from rl.reward_funcs import RerankReward

SIDS = [f"<|sid_begin|><s_a_{i}><|sid_end|>" for i in range(4)]


def test_reward_adapter_scores_and_logs():
    logged = {}
    reward = RerankReward("conditional")
    completions = [[{"role": "assistant", "content": format_answer("x", [SIDS[2], SIDS[0], SIDS[1], SIDS[3]])}],
                   [{"role": "assistant", "content": format_answer("x", SIDS)}],
                   [{"role": "assistant", "content": "no idea"}]]
    rewards = reward(prompts=[None] * 3, completions=completions, candidate_sids=[SIDS] * 3, target_index=[2, 2, 2],
                     log_metric=lambda k, v: logged.setdefault(k, v))
    assert rewards == pytest.approx([0.5 + 0.2, 0.0, -1.0])  # moved up; copied input (no bonus); unparseable
    assert logged["rerank/identity"] == pytest.approx(1 / 3) and logged["rerank/unparseable"] == pytest.approx(1 / 3)
    assert logged["rerank/format_valid"] == pytest.approx(2 / 3)
    assert logged["rerank/rank_gain"] == pytest.approx((2 + 0 - 0) / 3)  # fallback keeps the pre-rank order
    assert logged["rerank/input_order_tau"] == pytest.approx((1 / 3 + 1) / 2)  # parsed answers only
    assert logged["rerank/identity_edge"] == pytest.approx(0.0 - (0.7 + 0.0 - 1.0) / 3)  # copying earns 0 here


def test_prefix_through_marks_the_reasoning_up_to_its_closing_tokens():
    import torch

    ids = torch.tensor([[5, 1, 2, 9, 1, 2], [1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 1, 0], [0, 0, 0, 0, 0, 0]])
    assert prefix_through(ids, [1, 2]).int().tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0],
                                                          [0] * 6, [0] * 6]  # first hit only; no hit: none
    assert prefix_through(ids, [6]).int().tolist()[1] == [1] * 6
    assert not prefix_through(ids[:, :1], [1, 2]).any()  # shorter than the marker


def constant_or_varied(prompts, completions, kind, **_):
    """'const' prompts always earn 1 (zero-variance groups); 'varied' ones earn a hash of the text."""
    return [1.0 if k == "const" else int(hashlib.md5(str(c).encode()).hexdigest(), 16) % 997 / 997
            for c, k in zip(completions, kind, strict=True)]


def const_or_varied_setup(tmp_path, g: int):
    """16 prompts alternating 'varied' and 'const', and a one-step GRPO config with 4 groups of ``g``."""
    from datasets import Dataset
    from trl import GRPOConfig

    data = Dataset.from_list([{"prompt": f"Item {i}: ", "kind": "const" if i % 2 else "varied"} for i in range(16)])
    args = GRPOConfig(output_dir=str(tmp_path), num_generations=g, per_device_train_batch_size=4 * g,
                      max_completion_length=12, loss_type="dapo", beta=0.0, report_to=[], use_cpu=True,
                      max_steps=1, temperature=1.0, logging_steps=1)
    return data, args


@pytest.mark.slow
def test_dynamic_sampling_keeps_only_informative_groups(tiny_sid_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = 4
    data, args = const_or_varied_setup(tmp_path, g)
    trainer = DynamicSamplingGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_sid_model),
        processing_class=AutoTokenizer.from_pretrained(tiny_sid_model),
        reward_funcs=[constant_or_varied], args=args, train_dataset=data, max_refill_rounds=6)
    trainer.model.train()
    inputs = [data[i] for i in (0, 1, 2, 3) for _ in range(g)]  # 2 varied and 2 const groups
    batch = trainer._generate_and_score_completions(inputs)
    adv = batch["advantages"].view(-1, g)
    assert adv.shape == (4, g) and bool((adv.abs().amax(dim=1) > 0).all())  # every group informative
    n = adv.numel()
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask"):
        assert batch[key].shape[0] == n
    assert int(batch["num_items_in_batch"]) == int(batch["completion_mask"].sum())
    dropped = trainer._metrics["train"]["dynamic_sampling/dropped_group_share"][-1]
    assert 0.3 < dropped < 0.7  # half of all prompts are 'const'
    # without dynamic sampling the const groups stay in, with zero advantage
    trainer.dynamic_sampling = False
    plain = trainer._generate_and_score_completions(inputs)["advantages"].view(-1, g)
    assert int((plain.abs().amax(dim=1) == 0).sum()) == 2


def small_punishment(prompts, completions, **_):
    """Stands in for the soft overlong punishment: small, and different from one completion to the next."""
    return [-(int(hashlib.md5(str(c).encode()).hexdigest(), 16) % 97) / 1000 for c in completions]


def test_informative_groups_need_unequal_rewards():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.0, 0.5, 0.0, 0.3, nan, 0.1])
    assert informative_groups(rewards, 3).tolist() == [False, False, True, False]  # NaN: unscorable group


def test_each_process_refills_in_its_own_order():
    orders = [refill_order(50, seed=7, process_index=rank) for rank in range(4)]
    assert all(sorted(o) == list(range(50)) for o in orders)
    assert len({tuple(o) for o in orders}) == 4  # ranks draw different fresh prompts
    assert refill_order(50, seed=7, process_index=2) == orders[2]  # and a rerun draws the same ones
    assert refill_order(50, seed=8, process_index=2) != orders[2]


@pytest.mark.slow
def test_dynamic_sampling_judges_groups_by_the_rank_reward_alone(tiny_sid_model, tmp_path):
    """'const' prompts earn equal rank rewards but unequal (length-like) punishments: dropped all the same."""
    import re

    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = 4
    data, args = const_or_varied_setup(tmp_path, g)
    tok = AutoTokenizer.from_pretrained(tiny_sid_model)
    trainer = DynamicSamplingGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_sid_model), processing_class=tok,
        reward_funcs=[constant_or_varied, small_punishment], args=args, train_dataset=data, max_refill_rounds=6,
        informative_reward="constant_or_varied")
    assert [next(trainer._fresh_prompts) for _ in range(16)] == refill_order(16, 0, trainer.accelerator.process_index)
    trainer.model.train()
    inputs = [data[i] for i in (0, 1, 2, 3) for _ in range(g)]  # 2 varied and 2 const groups

    def kept_prompts(batch) -> list[int]:
        texts = tok.batch_decode(batch["prompt_ids"][::g], skip_special_tokens=True)
        return [int(re.search(r"Item (\d+)", t).group(1)) for t in texts]

    assert all(i % 2 == 0 for i in kept_prompts(trainer._generate_and_score_completions(inputs)))  # varied only
    assert trainer._metrics["train"]["dynamic_sampling/dropped_group_share"][-1] > 0.3
    # with no refill left, const groups only pad the batch: they keep the shape but carry no advantage
    trainer.max_refill_rounds = 0
    padded = trainer._generate_and_score_completions(inputs)
    advantages = padded["advantages"].view(-1, g)
    assert sorted(kept_prompts(padded)) == [0, 1, 2, 3]
    for prompt, row in zip(kept_prompts(padded), advantages, strict=True):
        assert (row.abs().max() == 0) == bool(prompt % 2)
    trainer.max_refill_rounds = 6
    # judged on the summed reward, the punishment alone keeps the const groups ...
    trainer.informative_reward = None
    assert {1, 3} <= set(kept_prompts(trainer._generate_and_score_completions(inputs)))
    # ... and TRL's per-group std scaling turns their tiny differences into unit-size advantages
    trainer.dynamic_sampling = False
    plain = trainer._generate_and_score_completions(inputs)["advantages"].view(-1, g)
    assert bool((plain[[1, 3]].abs().amax(dim=1) > 0.5).all())
    with pytest.raises(ValueError, match="informative_reward 'rank'"):
        DynamicSamplingGRPOTrainer(model=trainer.model, processing_class=tok, reward_funcs=[constant_or_varied],
                                   args=args, train_dataset=data, informative_reward="rank")


@pytest.mark.slow
def test_train_rl_runs_and_plots(tiny_sid_model, ml100k_catalog, ml100k_examples, tmp_path):
    config = DAPOConfig(num_generations=4, prompts_per_step=2, max_steps=2, max_completion_length=100,
                        soft_punish_cache=8, max_refill_rounds=1, save_steps=2, learning_rate=1e-4,
                        max_reasoning_tokens=4, train_reasoning=False)  # the loss skips "<think>...</think>"
    metrics = train_rl(tiny_sid_model, ml100k_examples[:20], ml100k_catalog, tmp_path, config)
    assert metrics["steps"] == 2 and metrics["prompts"] == len(rl_dataset(ml100k_examples[:20], ml100k_catalog))
    curves = metrics["curves"]
    assert len(curves["mean reward"]["value"]) == 2
    assert curves["format-valid rate"]["value"] == [1.0, 1.0]  # permutation-constrained rollouts (the default)
    assert (tmp_path / "curve-reward.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["epsilon_high"] == 0.28
    assert (tmp_path / "model" / "config.json").is_file()


def test_compare_reward_curves_draws_one_line_per_variant(tmp_path):
    for name, identity in (("naive", [0.1, 0.5, 0.9]), ("conditional", [0.1, 0.1, 0.05])):
        run = tmp_path / f"rl-{name}"
        run.mkdir()
        curves = {"identity-permutation rate": {"step": [1, 2, 3], "value": identity}}
        (run / "metrics.json").write_text(json.dumps({"curves": curves}))
    runs = {f"RL-{n}": tmp_path / f"rl-{n}" for n in ("naive", "conditional", "missing")}
    paths = compare_reward_curves(runs, tmp_path / "eval")
    assert [p.name for p in paths] == ["rl-rerank-identity.png"]  # only curves both runs logged
    assert paths[0].read_bytes()[:4] == b"\x89PNG"


def test_reward_hacking_panels_show_both_variants(tmp_path):
    for name, identity in (("naive", [0.1, 0.5, 0.9]), ("conditional", [0.1, 0.1, 0.05])):
        run = tmp_path / f"rl-{name}"
        run.mkdir()
        curves = {label: {"step": [1, 2, 3], "value": values} for label, values in (
            ("identity-permutation rate", identity), ("format-valid rate", [0.9, 0.95, 1.0]),
            ("mean rank gain (positions)", [0.2, 0.1, 0.0]))}
        (run / "metrics.json").write_text(json.dumps({"curves": curves}))
    paths = compare_reward_curves({f"RL-{n}": tmp_path / f"rl-{n}" for n in ("naive", "conditional")},
                                  tmp_path / "eval")
    assert paths[-1].name == "rl-reward-hacking.png" and paths[-1].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rl_with_lora_continues_the_sft_adapter(tiny_sid_model, ml100k_catalog, ml100k_examples, tmp_path):
    """With rl.dapo.lora, RL trains the SFT stage's adapter further, so its own adapter applies to the same
    base (stage 1's model) as the SFT one and vLLM can serve both by name; the merged model is saved too."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gr2.recipes.common import LoraSettings

    sft_adapter = tmp_path / "sft-adapter"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_sid_model),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(sft_adapter)
    AutoTokenizer.from_pretrained(tiny_sid_model).save_pretrained(sft_adapter)
    config = DAPOConfig(num_generations=4, prompts_per_step=2, max_steps=1, max_completion_length=100,
                        soft_punish_cache=8, max_refill_rounds=2, save_steps=5, learning_rate=1e-2,
                        max_reasoning_tokens=4, lora=LoraSettings(r=4, alpha=8, modules_to_save=[]))
    out = tmp_path / "rl"
    metrics = train_rl(tmp_path / "unused-merged-sft", ml100k_examples[:20], ml100k_catalog, out, config,
                       adapter_dir=sft_adapter)
    assert metrics["steps"] == 1 and metrics["adapter"] == str(out / "adapter")
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_sid_model.resolve())
    assert adapter_config["r"] == 4 and sorted(adapter_config["target_modules"]) == ["q_proj", "v_proj"]
    before, after = load_file(sft_adapter / "adapter_model.safetensors"), load_file(out / "adapter" /
                                                                                    "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "model" / "config.json").is_file()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_sid_model), out / "adapter")


def test_unknown_rollout_constraint_is_refused_before_loading(tmp_path):
    with pytest.raises(ValueError, match="rollout_constraint 'grammar'"):
        train_rl(tmp_path / "no-model", [], None, tmp_path / "out", DAPOConfig(rollout_constraint="grammar"))


def test_completion_budget_below_a_constrained_answer_is_refused(tiny_sid_model, ml100k_catalog, ml100k_examples):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_sid_model)
    sids = rl_dataset(ml100k_examples[:20], ml100k_catalog)["candidate_sids"]
    with pytest.raises(ValueError, match="max_completion_length 24 is below the [0-9]+ tokens"):
        check_completion_budget(tokenizer, sids, DAPOConfig(max_completion_length=24, max_reasoning_tokens=4))
    check_completion_budget(tokenizer, sids, DAPOConfig(max_completion_length=200, max_reasoning_tokens=4))


@pytest.mark.parametrize("constraint", ["permutation", "candidates"])
def test_vllm_rollouts_with_a_constraint_are_refused_at_load(constraint):
    """TRL's vLLM rollouts would decode freely: the combination must fail when the config is built."""
    with pytest.raises(ValueError, match=f"use_vllm: true cannot apply rollout_constraint '{constraint}'"):
        DAPOConfig(use_vllm=True, rollout_constraint=constraint)
    assert DAPOConfig(use_vllm=True, rollout_constraint="none").use_vllm


def test_gpu_recipe_asks_for_what_vllm_rollouts_can_do():
    from gr2.cli.run_options import load_checked_recipe
    from rl.config import dapo_config
    from tests.conftest import REPO

    dapo = load_checked_recipe(REPO / "configs" / "qwen3-gpu.yaml", []).rl.dapo  # refused at load if not
    assert dapo_config(dapo).rollout_constraint == "none"
