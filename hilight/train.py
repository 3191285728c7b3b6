"""Training the emphasis actor by GRPO from the frozen solver's reward alone (no evidence labels).

Each step takes ``examples_per_step`` train examples whose target is a candidate (the candidates are
the pre-ranker's, untouched: no target is ever inserted, so its position cannot leak), runs the actor
once, samples K Bernoulli masks per example, turns each into spans under the budget, and asks the
solver (greedy, as served) to rank every emphasised prompt. Then

    reward     = 0.7 * HR@5 + 0.3 * NDCG@5   (0 when the answer is unparseable)
    advantage  = clamp(reward - mean of the example's K rewards, -c, c)
    loss       = -advantage * log pi(rendered spans)
                 + keep_coef * (mean keep probability - keep_target)^2
                 - entropy_coef * mean Bernoulli entropy
                 + value_coef * (value - mean reward)^2

where log pi is taken over the units actually rendered (a sampled unit the budget dropped counts as not
kept: the solver never saw it). That is the paper's Bernoulli sampling, which renders less emphasis than the
budget-filling spans evaluation uses. ``sampling: ranked`` draws each mask as a Plackett-Luce ranking of the
units instead (Gumbel-perturbed logits) and fills the budget in that order, exactly as the evaluation's
``top`` decode does with the unperturbed logits; log pi is then the ranking's log-probability up to the last
unit rendered, the keep-rate term is dropped (the budget sets it) and the entropy is the softmax's.

Train examples come from the train split only; every ``eval_steps`` the actor's deterministic spans are
scored on a seeded sample of valid users and the best step is kept (``OUT/actor``); test is for
``gr2 hilight eval`` alone. Checkpoints (``OUT/checkpoint-N``) hold the actor's trainable weights, the
optimizer and the logs, and a killed run resumes from the newest one: batches and masks are seeded by the
step, so a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from data.artifacts import atomic_path, write_json_atomic
from evals.report import line_chart
from gr2.rerank_data import ItemCatalog, RerankExample
from hilight.actor import ActorInput, EmphasisActor
from hilight.config import HiLightConfig
from hilight.solver import Solver, solver_reward
from hilight.spans import accepted_spans, kept_share, render_messages, rendered_units

STATE = "trainer_state.pt"


class HiLightTrainer:
    def __init__(self, actor: EmphasisActor, solver: Solver, catalog: ItemCatalog,
                 train_examples: Sequence[RerankExample], valid_examples: Sequence[RerankExample],
                 out_dir: str | Path, config: HiLightConfig):
        leaked = sorted({ex.split for ex in train_examples} - {"train"})
        if leaked:
            raise ValueError(f"HiLight trains on the train split only; got examples from {leaked}")
        self.train_examples = [ex for ex in train_examples if ex.target_index is not None]
        self.valid_examples = [ex for ex in valid_examples if ex.target_index is not None]
        if not self.train_examples:
            raise ValueError("no train example has its target among the candidates: nothing to reward")
        self.actor, self.solver, self.catalog = actor, solver, catalog
        self.out_dir, self.config = Path(out_dir), config
        t = config.training
        heads = [*actor.head.parameters(), *actor.value_head.parameters()]
        head_ids = {id(p) for p in heads}
        backbone = [p for p in actor.parameters() if p.requires_grad and id(p) not in head_ids]
        if t.backbone_learning_rate == 0:
            for p in backbone:
                p.requires_grad_(False)
            backbone = []
        groups = [{"params": heads, "lr": t.learning_rate}]
        if backbone:
            groups.append({"params": backbone, "lr": t.backbone_learning_rate})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        self._inputs: dict[int, ActorInput] = {}
        self._orders: dict[int, np.ndarray] = {}
        self.history: list[dict] = []  # one record a step
        self.evals: list[dict] = []  # one record a selection on valid
        self.best: dict | None = None

    # -- data ------------------------------------------------------------------------------------------
    def batch(self, step: int) -> list[int]:
        """Indices of this step's train examples: epoch after epoch of seeded permutations."""
        n, size = len(self.train_examples), self.config.training.examples_per_step
        out = []
        for position in range(step * size, (step + 1) * size):
            epoch, offset = divmod(position, n)
            if epoch not in self._orders:
                self._orders[epoch] = np.random.default_rng([self.config.training.seed, epoch]).permutation(n)
            out.append(int(self._orders[epoch][offset]))
        return out

    def actor_input(self, index: int) -> ActorInput:
        if index not in self._inputs:
            self._inputs[index] = self.actor.prepare_example(self.catalog, self.train_examples[index])
        return self._inputs[index]

    # -- one GRPO step -------------------------------------------------------------------------------
    def step(self, step: int) -> dict:
        t, budget, granularity = self.config.training, self.config.budget, self.actor.config.granularity
        started = time.perf_counter()
        indices = self.batch(step)
        examples = [self.train_examples[i] for i in indices]
        inputs = [self.actor_input(i) for i in indices]
        self.actor.train()
        out = self.actor(inputs)
        generator = torch.Generator().manual_seed(t.seed * 1_000_003 + step)
        actions, conversations, sids, kept, spans_count = [], [], [], [], []
        for ex, x, logits in zip(examples, inputs, out.logits, strict=True):
            scores = logits.detach().float().cpu()
            rows = []
            for _ in range(t.masks_per_example):
                if t.sampling == "ranked":  # Gumbel-top-k: a Plackett-Luce ranking of the units by their logits
                    gumbel = -torch.log(-torch.log(torch.rand(scores.shape, generator=generator).clamp_min(1e-12)))
                    order = torch.argsort(scores + gumbel, descending=True, stable=True).numpy()
                    spans, positions = accepted_spans(x.layout, order.tolist(), budget, granularity,
                                                      self.actor.config.window)
                    rows.append(order[: max(positions) + 1] if positions else order[:0])
                else:
                    probs = torch.sigmoid(scores)
                    mask = torch.bernoulli(probs, generator=generator).numpy()
                    spans = self.actor.spans(probs.numpy(), x.layout, budget, chosen=mask)
                    rows.append(rendered_units(x.layout, spans, granularity))
                conversations.append(render_messages(self.catalog, ex, spans))
                sids.append(self.catalog.answer_keys(ex))
                kept.append(kept_share(x.layout, spans))
                spans_count.append(len(spans))
            actions.append(rows)
        plain = [self.catalog.messages(ex) for ex in examples]  # the no-emphasis reference, same examples
        answers = self.solver.answer(conversations + plain, sids + [self.catalog.answer_keys(ex) for ex in examples])
        k = t.masks_per_example
        rewards = torch.tensor([solver_reward(a, examples[n // k].target_index)
                                for n, a in enumerate(answers[: len(conversations)])]).view(len(examples), k)
        plain_rewards = [solver_reward(a, ex.target_index) for a, ex in zip(answers[len(conversations):], examples,
                                                                              strict=True)]
        advantages = (rewards - rewards.mean(1, keepdim=True)).clamp(-t.advantage_clip, t.advantage_clip)

        policy = []
        for logits, rows, adv in zip(out.logits, actions, advantages, strict=True):
            if not len(logits):
                continue
            if t.sampling == "ranked":
                logp = torch.stack([ranking_log_prob(logits, torch.as_tensor(r, device=logits.device))
                                    for r in rows]) / len(logits)
            else:
                units = torch.tensor(np.stack(rows), device=logits.device)
                logp = (units * torch.nn.functional.logsigmoid(logits) +
                        (1 - units) * torch.nn.functional.logsigmoid(-logits)).mean(1)  # per mask, over units
            policy.append(-(adv.to(logp.device) * logp).mean())
        pg_loss = torch.stack(policy).mean() if policy else out.values.sum() * 0
        all_logits = torch.cat(list(out.logits))
        probs = torch.sigmoid(all_logits)
        if t.sampling == "ranked":  # the budget fixes how much is kept; explore over which units come first
            keep_loss = all_logits.new_zeros(())
            entropy = torch.stack([-(torch.log_softmax(lg, 0) * torch.softmax(lg, 0)).sum()
                                   for lg in out.logits if len(lg)]).mean()
        else:
            keep_loss = (probs.mean() - t.keep_target) ** 2
            entropy = -(probs * torch.nn.functional.logsigmoid(all_logits)
                        + (1 - probs) * torch.nn.functional.logsigmoid(-all_logits)).mean()
        value_loss = ((out.values - rewards.mean(1).to(out.values.device)) ** 2).mean()
        loss = pg_loss + t.keep_coef * keep_loss - t.entropy_coef * entropy + t.value_coef * value_loss
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                                   t.max_grad_norm)
        self.optimizer.step()
        return {"step": step + 1, "reward": float(rewards.mean()), "plain_reward": float(np.mean(plain_rewards)),
                "reward_std_in_group": float(rewards.std(1, unbiased=False).mean()),
                "kept_share": float(np.mean(kept)), "spans_per_example": float(np.mean(spans_count)),
                "keep_prob": probs.mean().item(), "entropy": entropy.item(), "loss": loss.item(),
                "pg_loss": pg_loss.item(), "value_loss": value_loss.item(), "grad_norm": grad_norm.item(),
                "solver_calls": int(getattr(self.solver, "calls", 0)), "seconds": time.perf_counter() - started}

    # -- selection on valid --------------------------------------------------------------------------
    def select_examples(self) -> list[RerankExample]:
        n = self.config.training.select_users
        if not n or len(self.valid_examples) <= n:
            return self.valid_examples
        rows = np.sort(np.random.default_rng(self.config.training.seed).choice(len(self.valid_examples), n,
                                                                                replace=False))
        return [self.valid_examples[i] for i in rows]

    def evaluate(self, step: int) -> dict:
        """Mean reward of the actor's deterministic spans (the eval decode) on the selection users."""
        examples = self.select_examples()
        inputs = [self.actor.prepare_example(self.catalog, ex) for ex in examples]
        spans = self.actor.apply(inputs, self.config.budget, self.config.eval.decode)
        conversations = [render_messages(self.catalog, ex, s) for ex, s in zip(examples, spans, strict=True)]
        plain = [self.catalog.messages(ex) for ex in examples]
        sids = [self.catalog.answer_keys(ex) for ex in examples]
        answers = self.solver.answer(conversations + plain, sids + sids)
        rewards = [solver_reward(a, ex.target_index) for a, ex in zip(answers, examples + examples, strict=True)]
        n = len(examples)
        return {"step": step, "valid_reward": float(np.mean(rewards[:n])), "valid_plain_reward":
                float(np.mean(rewards[n:])), "valid_kept_share": float(np.mean(
                    [kept_share(x.layout, s) for x, s in zip(inputs, spans, strict=True)])), "users": n}

    def _select(self, step: int) -> dict:
        record = self.evaluate(step)
        self.evals.append(record)
        if self.best is None or record["valid_reward"] > self.best["valid_reward"]:
            self.best = record
            self.actor.save(self.out_dir / "best", extra={"selection": record, "solver": self.solver.name,
                                                          "budget": asdict(self.config.budget),
                                                          "decode": self.config.eval.decode})
        return record

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> Path:
        path = self.out_dir / f"checkpoint-{step}"
        self.actor.save(path)
        with atomic_path(path / STATE) as tmp:
            torch.save({"step": step, "optimizer": self.optimizer.state_dict(), "history": self.history,
                        "evals": self.evals, "best": self.best}, tmp)
        for old in self.checkpoints()[:-2]:  # keep the newest two
            shutil.rmtree(old, ignore_errors=True)
        return path

    def checkpoints(self) -> list[Path]:
        found = [p for p in self.out_dir.glob("checkpoint-*") if (p / STATE).is_file()]
        return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))

    def resume(self) -> int:
        """Load the newest checkpoint; the step to continue from (0 without one)."""
        found = self.checkpoints()
        if not found:
            return 0
        state = torch.load(found[-1] / STATE, map_location="cpu", weights_only=False)
        weights = torch.load(found[-1] / "actor.pt", map_location="cpu", weights_only=True)
        self.actor.load_state_dict(weights, strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.history, self.evals, self.best = state["history"], state["evals"], state["best"]
        return int(state["step"])

    # -- the run ------------------------------------------------------------------------------------
    def train(self, progress: bool = True) -> dict:
        t = self.config.training
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = self.resume()
        started = time.perf_counter()
        if start == 0 and not self.evals:
            self._select(0)  # the untrained actor: where selection starts
        bar = tqdm(range(start, t.max_steps), desc="hilight", unit="step", initial=start, total=t.max_steps,
                   disable=not progress)
        for step in bar:
            record = self.step(step)
            self.history.append(record)
            done = step + 1
            if done % t.eval_steps == 0 or done == t.max_steps:
                record.update(self._select(done))
            if done % t.save_steps == 0 or done == t.max_steps:
                self.save_checkpoint(done)
            bar.set_postfix(reward=f"{record['reward']:.3f}", plain=f"{record['plain_reward']:.3f}",
                            kept=f"{record['kept_share']:.2f}", best=f"{self.best['valid_reward']:.3f}")
        return self.finish(time.perf_counter() - started)

    def finish(self, seconds: float) -> dict:
        """The selected actor as ``OUT/actor``, ``metrics.json`` and the curves."""
        final = self.out_dir / "actor"
        tmp = self.out_dir / "actor.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.out_dir / "best", tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        metrics = {"best": self.best, "evals": self.evals, "history": self.history,
                   "train_examples": len(self.train_examples), "select_users": len(self.select_examples()),
                   "solver": self.solver.name, "solver_calls": int(getattr(self.solver, "calls", 0)),
                   "seconds_this_session": round(seconds, 1), "config": asdict(self.config)}
        write_json_atomic(self.out_dir / "metrics.json", metrics)
        metrics["curves"] = [str(p) for p in training_curves(self.history, self.evals, self.out_dir)]
        return metrics


def ranking_log_prob(logits: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """Plackett-Luce log-probability of drawing the units ``drawn`` first, in that order, from ``logits``:
    sum over draws of logit - logsumexp(logits of the units not yet drawn)."""
    undrawn = torch.ones(len(logits), dtype=torch.bool, device=logits.device)
    undrawn[drawn] = False
    ordered = torch.cat([logits[drawn], logits[undrawn]])  # the drawn units first, then the rest in any order
    remaining = torch.logcumsumexp(ordered.flip(0), 0).flip(0)  # logsumexp of each draw's units not yet drawn
    return (ordered[: len(drawn)] - remaining[: len(drawn)]).sum()


def moving_average(values: Sequence[float], window: int = 10) -> list[float]:
    out, total = [], 0.0
    for n, v in enumerate(values):
        total += v
        if n >= window:
            total -= values[n - window]
        out.append(total / min(n + 1, window))
    return out


def training_curves(history: Sequence[dict], evals: Sequence[dict], out_dir: Path) -> list[Path]:
    """reward (train, with the same examples unemphasised, and valid selection), kept share, spans per example."""
    if not history:
        return []
    steps = [r["step"] for r in history]

    def series(key: str) -> tuple[list[int], list[float]]:
        return steps, moving_average([r[key] for r in history])

    reward = {"train reward (moving avg 10)": series("reward"), "same prompts unemphasised": series("plain_reward"),
              "valid (actor's spans)": ([e["step"] for e in evals], [e["valid_reward"] for e in evals]),
              "valid unemphasised": ([e["step"] for e in evals], [e["valid_plain_reward"] for e in evals])}
    return [
        line_chart(out_dir / "curve-reward.png", reward, "HiLight: solver reward 0.7 HR@5 + 0.3 NDCG@5",
                   ylabel="reward"),
        line_chart(out_dir / "curve-kept-share.png", {"kept share of history tokens": series("kept_share"),
                                                       "mean keep probability": series("keep_prob")},
                   "HiLight: how much is emphasised", ylabel="share"),
        line_chart(out_dir / "curve-spans.png", {"spans per example": series("spans_per_example")},
                   "HiLight: spans per example (sampled masks)", ylabel="spans"),
    ]
