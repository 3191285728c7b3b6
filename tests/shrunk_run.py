"""The whole GR2 pipeline on ML-100K (the benchmark recipe, every stage), shrunk to seconds a stage.

One such run is built per test session (``small_run`` in ``tests/conftest.py``): the end-to-end
pipeline tests, ``gr2 serve`` and the browser test of the demo all use it, so the suite pays for it once.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "ml-100k-tiny.yaml"  # every stage, RL and free-decoding rows included
SHRINK = {
    "ranker.options.epochs": 1, "pretrain.training.max_steps": 10, "midtrain.training.max_steps": 10,
    "midtrain.mixture.num_examples": 300, "traces.max_examples": 300,
    "midtrain.phases": "[{name: copy, num_examples: 64, training: {max_steps: 4, batch_size: 16}}]",
    "sft.training.max_steps": 10,
    "eval.max_users": 16, "eval.generation.max_new_tokens": 64, "eval.generation.backend": "hf",
    "tiny_model.hidden_size": 64,
    "tiny_model.num_attention_heads": 2, "tiny_model.num_key_value_heads": 1, "tiny_model.vocab_size": 1024,
    "tiny_model.intermediate_size": 128, "rl.max_examples": 200, "ranker.train_cuts": 2,
    "rl.dapo": "{num_generations: 4, prompts_per_step: 2, max_steps: 2, max_completion_length: 72,"
               " max_reasoning_tokens: 0, soft_punish_cache: 8, max_refill_rounds: 1}",
}
SETS = ["--recipe", str(RECIPE), *[arg for key, value in SHRINK.items() for arg in ("--set", f"{key}={value}")]]
