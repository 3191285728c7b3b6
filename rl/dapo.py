"""Stage 3: DAPO reinforcement learning with GR2's verifiable rewards, on TRL's ``GRPOTrainer``.

DAPO settings as ``DESIGN.md`` fixes them: token-level ``dapo`` loss, clip epsilon 0.2 / 0.28
(clip-higher), no KL term (beta 0), truncated completions masked out of the loss, a soft overlong
punishment (TRL's ``get_soft_overlong_punishment``), and dynamic sampling
(``rl.dynamic_sampling``, deciding on the rank reward alone). Rollouts can decode under the rerank
answer constraint, and are then scored under it too (``rl.constrained_rollouts``). Only examples
whose target is among the candidates are used: the reward is defined by where the target moves.
Each step logs mean reward, format-valid rate, identity-permutation rate, mean rank gain and the
share of groups dynamic sampling dropped.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from evals.report import line_chart, panel_chart
from gr2.answer_constraint import RerankAnswerConstraint
from gr2.base_model import ADAPTER_CONFIG, load_adapter, load_base_model
from gr2.recipes.common import StepTimer, cuda_available, finish_stage, train_resuming
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import THINK_CLOSE
from rl.config import DAPOConfig
from rl.constrained_rollouts import RolloutConstraint
from rl.dynamic_sampling import DynamicSamplingGRPOTrainer
from rl.reward_funcs import RerankReward

CURVES = {
    "reward": "mean reward",
    "rerank/format_valid": "format-valid rate",
    "rerank/identity": "identity-permutation rate",
    "rerank/rank_gain": "mean rank gain (positions)",
    "rerank/input_order_tau": "Kendall tau to the input order",
    "rerank/identity_edge": "identity's reward minus the rollouts'",
    "dynamic_sampling/dropped_group_share": "groups dropped by dynamic sampling",
}


# GR2's reward-hacking monitors, drawn side by side for the reward variants (rl-reward-hacking.png)
HACKING_PANELS = ("rerank/identity", "rerank/format_valid", "rerank/rank_gain")
HACKING_PANELS_IF_LOGGED = ("rerank/input_order_tau", "rerank/identity_edge")  # runs before it was logged lack it


def compare_reward_curves(runs: dict[str, Path], out_dir: Path) -> list[Path]:
    """One PNG per monitored curve with a line per reward variant (e.g. naive vs conditional), and
    ``rl-reward-hacking.png`` with the identity-permutation rate, format-valid rate and mean rank gain side by
    side: GR2's reward-hacking picture, where the naive reward's identity rate climbs and the conditional
    one's does not."""
    import json

    curves = {name: json.loads((run / "metrics.json").read_text())["curves"] for name, run in runs.items()
              if (run / "metrics.json").is_file()}
    paths = []
    for key, label in CURVES.items():
        series = {name: (c[label]["step"], c[label]["value"]) for name, c in curves.items() if c.get(label)}
        if len(series) >= 2:
            paths.append(line_chart(Path(out_dir) / f"rl-{key.replace('/', '-')}.png", series,
                                    f"RL rewards compared: {label}", ylabel=label))
    labels = [CURVES[key] for key in HACKING_PANELS] + [
        CURVES[key] for key in HACKING_PANELS_IF_LOGGED if any(c.get(CURVES[key]) for c in curves.values())]
    panels = {label: {name: (c[label]["step"], c[label]["value"]) for name, c in curves.items() if c.get(label)}
              for label in labels}
    if len(curves) >= 2 and all(panels.values()):
        paths.append(panel_chart(Path(out_dir) / "rl-reward-hacking.png", panels,
                                 "Reward hacking: " + " vs ".join(curves) + " (per RL step)"))
    return paths


def rl_dataset(examples: list[RerankExample], catalog: ItemCatalog):
    from datasets import Dataset

    rows = [{"prompt": catalog.messages(ex), "candidate_sids": catalog.answer_keys(ex),
             "target_index": ex.target_index} for ex in examples if ex.target_index is not None]
    if not rows:
        raise ValueError("no example has its target among the candidates: nothing to reward")
    return Dataset.from_list(rows)


def check_completion_budget(tokenizer, candidate_sids: list[list[str]], config: DAPOConfig) -> None:
    """Refuse a ``max_completion_length`` below what a constrained answer can take: such rollouts are
    cut, and ``mask_truncated_completions`` drops them from the loss, so the run would learn nothing."""
    constraint = RerankAnswerConstraint(tokenizer, candidate_sids, prompt_length=0,
                                        max_reasoning_tokens=config.max_reasoning_tokens)
    needed = max(constraint.token_budget(row) for row in range(len(candidate_sids)))
    if needed > config.max_completion_length:
        raise ValueError(f"rl.dapo.max_completion_length {config.max_completion_length} is below the "
                         f"{needed} tokens a constrained answer can take ({config.max_reasoning_tokens} "
                         "reasoning tokens plus every candidate SID): truncated rollouts are masked out of "
                         f"the loss. Raise max_completion_length to at least {needed} or lower "
                         "max_reasoning_tokens.")


def grpo_config(out_dir: Path, config: DAPOConfig):
    from trl import GRPOConfig

    extra = {}
    if config.use_vllm:
        extra = dict(use_vllm=True, vllm_mode="server", vllm_server_host=config.vllm_server_host,
                     vllm_server_port=config.vllm_server_port)
    # config.grpo: any other GRPOConfig field (rl.config checks that none of them is one set here)
    return GRPOConfig(
        output_dir=str(out_dir),
        loss_type="dapo",
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        beta=0.0,
        mask_truncated_completions=True,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.num_generations * config.prompts_per_step,
        steps_per_generation=1,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        report_to=[],
        seed=config.seed,
        bf16=config.bf16,
        use_cpu=not cuda_available(),
        **extra,
        **{"save_total_limit": 2, **config.grpo},  # defaults the recipe lets rl.dapo.grpo change
    )


def load_policy(model_dir: str | Path, config: DAPOConfig, adapter_dir: str | Path | None = None):
    """The policy and its tokenizer, and the PEFT config for the trainer to apply (None when the model is
    trained whole or already carries its adapter): with ``config.lora``, the SFT stage's adapter
    (``adapter_dir``) continues training when there is one, otherwise a new adapter goes on the model."""
    if config.lora is not None and adapter_dir is not None and (Path(adapter_dir) / ADAPTER_CONFIG).is_file():
        model, tokenizer = load_adapter(adapter_dir, merge=False, trainable=True)
        return model, tokenizer, None
    model, tokenizer = load_base_model(model_dir)
    return model, tokenizer, (config.lora.peft_config() if config.lora is not None else None)


def train_rl(model_dir: str | Path, examples: list[RerankExample], catalog: ItemCatalog, out_dir: Path,
             config: DAPOConfig, adapter_dir: str | Path | None = None) -> dict:
    """DAPO from ``model_dir`` (with ``config.lora``: continuing the adapter in ``adapter_dir`` when given)."""
    from trl.rewards import get_soft_overlong_punishment

    if config.rollout_constraint not in ("permutation", "candidates", "none"):
        raise ValueError(f"rl.dapo.rollout_constraint {config.rollout_constraint!r}: expected permutation, "
                         "candidates or none")
    out_dir = Path(out_dir)
    model, tokenizer, peft_config = load_policy(model_dir, config, adapter_dir)
    dataset = rl_dataset(examples, catalog)
    if config.rollout_constraint != "none":
        check_completion_budget(tokenizer, dataset["candidate_sids"], config)
    rank_reward = RerankReward(config.reward, config.alpha)
    rollout_constraint = None
    if config.rollout_constraint != "none":  # never with use_vllm (DAPOConfig refuses the combination)
        rollout_constraint = RolloutConstraint(config.max_reasoning_tokens,
                                               unique=config.rollout_constraint == "permutation")
    trainer = DynamicSamplingGRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[rank_reward,
                      get_soft_overlong_punishment(config.max_completion_length, config.soft_punish_cache)],
        args=grpo_config(out_dir, config),
        train_dataset=dataset,
        dynamic_sampling=config.dynamic_sampling,
        max_refill_rounds=config.max_refill_rounds,
        refill_seed=config.seed,
        loss_skips_until=None if config.train_reasoning else tokenizer.encode(THINK_CLOSE, add_special_tokens=False),
        informative_reward=rank_reward.__name__,  # the length punishment alone must not keep a group
        rollout_constraint=rollout_constraint,  # rollouts decoded, and scored, under the answer constraint
        peft_config=peft_config,
        callbacks=[timer := StepTimer()],
    )
    result = train_resuming(trainer, out_dir)
    history = [e for e in trainer.state.log_history if "step" in e]
    curves = {label: ([e["step"] for e in history if key in e], [e[key] for e in history if key in e])
              for key, label in CURVES.items()}
    if trainer.accelerator.is_main_process:
        for key, label in CURVES.items():
            if curves[label][0]:
                line_chart(out_dir / f"curve-{key.replace('/', '-')}.png", {label: curves[label]},
                           f"RL ({config.reward}): {label}")
    metrics = {"steps": result.global_step, "train_loss": result.training_loss, "prompts": len(dataset),
               "step_seconds": timer.summary(),
               "curves": {label: {"step": xs, "value": ys} for label, (xs, ys) in curves.items()},
               "config": asdict(config)}
    return finish_stage(trainer, tokenizer, out_dir, metrics)
