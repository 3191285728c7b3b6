"""The GR2 pipeline on one recipe: one method per stage, each skipping what an earlier run finished.

Lives in the CLI layer because it wires every package together (data, tokenizer, rankers, gr2).
A run directory holds one subdirectory per stage; a stage counts as done when its final artifact
exists (written atomically), so re-running after a kill continues where it stopped, and the
training stages themselves resume from their newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from data.artifacts import write_json_atomic, write_manifest, write_text_atomic
from data.errors import DataError
from data.schema import PreparedDataset
from gr2.cli.common import console
from gr2.config import Recipe, recipe_dict
from gr2.recipes.common import is_main_process

STAGES = ("tokenizer", "ranker", "pretrain", "midtrain", "traces", "sft", "rl", "eval")


@dataclass
class RunLayout:
    root: Path

    @property
    def sid(self) -> Path:
        return self.root / "sid"

    @property
    def ranker(self) -> Path:
        return self.root / "ranker"

    @property
    def pretrain(self) -> Path:
        return self.root / "stage0"

    @property
    def midtrain(self) -> Path:
        return self.root / "stage1"

    @property
    def traces(self) -> Path:
        return self.root / "traces" / "traces.jsonl"

    @property
    def stage1_recommender(self) -> Path:
        """Stage 1's mixture model (next-SID + alignment), before any later phase such as the copy warm-up."""
        mixture = self.midtrain / "phase-0-mixture" / "model"
        return mixture if mixture.exists() else self.midtrain / "model"

    @property
    def sft(self) -> Path:
        return self.root / "sft"

    def rl(self, reward: str) -> Path:
        return self.root / f"rl-{reward}"

    @property
    def eval(self) -> Path:
        return self.root / "eval"


class Pipeline:
    def __init__(self, recipe: Recipe, run_dir: Path, force: bool = False):
        self.recipe = recipe
        self.layout = RunLayout(Path(run_dir).expanduser())
        self.force = force
        self.timings: dict[str, float] = {}

    # -- shared inputs ---------------------------------------------------------------------------
    @cached_property
    def dataset(self) -> PreparedDataset:
        from data.prepare import PrepareConfig, load_prepared, prepare
        from data.sources import BUILTIN

        try:
            return load_prepared(self.recipe.dataset)
        except DataError:
            if self.recipe.dataset not in BUILTIN:
                raise
            return prepare(PrepareConfig(self.recipe.dataset))

    @cached_property
    def catalog(self):
        from gr2.rerank_data import ItemCatalog
        from tokenizer.fit import load_semantic_ids

        catalog = ItemCatalog.build(self.dataset, load_semantic_ids(self.layout.sid), self.recipe.max_title_chars,
                                    self.recipe.answer_format)
        if self.recipe.prompt_evidence == "cooccurrence":
            from gr2.prompt_evidence import CooccurrenceEvidence

            catalog.evidence = CooccurrenceEvidence(self.cooccurrence)
        return catalog

    @cached_property
    def cooccurrence(self):
        """Co-occurrence cross-fitted like the train candidates (their folds, from the candidates' manifest, the
        recipe's if none was written): a train example must not see evidence counted on its own target."""
        from data.candidates import load_crossfit_settings
        from gr2.teachers import CrossFitCooccurrence

        try:
            folds, train_cuts = load_crossfit_settings(self.layout.ranker)
        except DataError:
            folds, train_cuts = self.recipe.ranker.folds, self.recipe.ranker.train_cuts
        return CrossFitCooccurrence.build(self.dataset, folds, train_cuts)

    def examples(self, split: str, limit: int, seed: int, with_target: bool = False, max_history: int | None = None):
        """A split's rerank examples (a seeded sample of ``limit`` rows); ``with_target`` keeps only rows whose
        target is a candidate: the only ones a teacher can explain, a reward can score or a reranker can change."""
        from data.candidates import load_candidates
        from gr2.rerank_data import examples_from_candidates

        frame = load_candidates(self.layout.ranker, split)
        if with_target:
            frame = frame[frame["target_rank"] <= self.recipe.ranker.k]
        if limit and len(frame) > limit:
            rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
            frame = frame.iloc[rows]
        return examples_from_candidates(self.dataset, frame, split, max_history or self.recipe.max_history)

    def _done(self, artifact: Path) -> bool:
        return artifact.exists() and not self.force

    def _start_training(self, stage_dir: Path) -> None:
        """With --force a training stage starts from scratch, not from its old checkpoints.

        Rank 0 removes the directory; every rank waits, so none resumes from what is being deleted.
        """
        from accelerate import PartialState

        from gr2.recipes.common import cuda_available

        if self.force and stage_dir.exists() and is_main_process():
            shutil.rmtree(stage_dir)
        PartialState(cpu=not cuda_available()).wait_for_everyone()

    # -- stages ----------------------------------------------------------------------------------
    def run_tokenizer(self) -> None:
        from tokenizer.fit import fit_dataset

        if self._done(self.layout.sid / "report.json"):
            return
        section = self.recipe.tokenizer
        fit_dataset(self.dataset, section.method, self.layout.sid, **section.options)

    def run_ranker(self) -> None:
        from data.candidates import load_candidate_summary
        from rankers.candidates import generate_candidates
        from rankers.run import load_config_file, train_run

        section = self.recipe.ranker
        if not self._done(self.layout.ranker / "metrics.json"):
            values = load_config_file(section.config) if section.config else {}
            values.update(section.options)
            train_run(self.dataset.name, section.model, self.layout.ranker, values,
                      resume=(self.layout.ranker / "config.json").exists() and not self.force)
        summary = self.layout.ranker / "candidates" / "summary.json"
        wanted = {"k": section.k, "train_cuts": section.train_cuts}
        made = load_candidate_summary(self.layout.ranker) if summary.is_file() else {}
        if not self._done(summary) or {key: made.get(key, 1) for key in wanted} != wanted:
            generate_candidates(self.layout.ranker, k=section.k, folds=section.folds, train_cuts=section.train_cuts)

    def run_pretrain(self) -> None:
        from gr2.base_model import build_tiny_model
        from gr2.recipes.pretrain import pretrain_on_text

        if self.recipe.base_model != "tiny" or self._done(self.layout.pretrain / "model"):
            return
        self._start_training(self.layout.pretrain)
        texts = self.dataset.item_texts()
        model, tokenizer = build_tiny_model(texts, self.recipe.tiny_model)
        pretrain_on_text(model, tokenizer, texts, self.layout.pretrain, self.recipe.pretrain)

    def run_midtrain(self) -> None:
        from gr2.recipes.midtrain import midtrain

        if self._done(self.layout.midtrain / "model"):
            return
        self._start_training(self.layout.midtrain)
        base = self.layout.pretrain / "model" if self.recipe.base_model == "tiny" else self.recipe.base_model
        config = self.recipe.midtrain  # pick_next prompts look like the run's rerank prompts
        # the train-split targets (seq[-3] ...) stay out of stage 1, as they stay out of the ranker's folds
        mixture = dataclasses.replace(config.mixture, pick_history=self.recipe.max_history,
                                      pick_candidates=self.recipe.ranker.k, holdout_last=self.recipe.ranker.train_cuts)
        if self.recipe.max_title_chars is not None:  # stage 1 ties SIDs to the titles the prompts will show
            mixture = dataclasses.replace(mixture, max_title_chars=self.recipe.max_title_chars)
        valid_score = self.stage1_valid_score(config.select_users) if config.patience else None
        midtrain(base, self.dataset, self.catalog.sids, self.layout.midtrain,
                 dataclasses.replace(config, mixture=mixture), valid_score)

    def stage1_valid_score(self, users: int):
        """Stage 1's selection score: NDCG@5 of its candidate-likelihood order on valid (seeded sample of users
        whose target is a candidate), the use the later stages make of what it knows."""
        from gr2.evaluate import rerank_metrics
        from gr2.sid_lm import LikelihoodReranker, LikelihoodSettings, SIDLikelihood

        history = self.recipe.midtrain.mixture.sequence_length
        examples = self.examples("valid", users, self.recipe.seed, with_target=True, max_history=history)

        def score(model, tokenizer) -> dict[str, float]:
            scorer = SIDLikelihood(model, tokenizer, self.catalog.sids, LikelihoodSettings(max_history=history))
            metrics = rerank_metrics(examples, LikelihoodReranker(scorer, self.catalog).rerank(examples))
            return {"score": metrics["NDCG@5"], "NDCG@5": metrics["NDCG@5"], "R@5": metrics["R@5"],
                    "pre-rank NDCG@5": rerank_metrics(examples, None)["NDCG@5"], "users": len(examples)}

        return score

    def teacher(self):
        from gr2.teachers import HeuristicTeacher, HFTeacher, OpenAITeacher

        section = self.recipe.traces
        if section.teacher == "heuristic":  # cross-fitted: a train trace never cites its own target's counts
            return HeuristicTeacher(self.catalog, self.cooccurrence, section.heuristic)
        if section.teacher in ("openai", "hf") and not section.model:
            raise DataError(f"traces.teacher {section.teacher!r} needs traces.model")
        if section.teacher == "openai":
            if not section.endpoint:
                raise DataError("traces.teacher 'openai' needs traces.endpoint (e.g. http://127.0.0.1:8000/v1)")
            return OpenAITeacher(self.catalog, section.endpoint, section.model,
                                 os.environ.get(section.api_key_env), section.llm)
        if section.teacher == "hf":
            return HFTeacher(self.catalog, section.model, section.llm)
        raise DataError(f"unknown teacher {section.teacher!r}; available: ['heuristic', 'openai', 'hf']")

    def run_traces(self) -> None:
        from gr2.traces import generate_traces, write_traces

        if self._done(self.layout.traces):
            return
        # every answered example is appended here at once, so a teacher failing half-way loses nothing and the
        # rerun asks only about the rest; the finished traces.jsonl is written whole at the end
        progress = self.layout.traces.with_suffix(".partial.jsonl")
        if self.force:
            progress.unlink(missing_ok=True)
        section = self.recipe.traces
        examples = self.examples("train", section.max_examples, self.recipe.seed, with_target=True)
        records, summary = generate_traces(examples, self.catalog, self.teacher(), section.trace, progress)
        write_traces(self.layout.traces, records, summary)
        progress.unlink()
        if summary["resumed_examples"]:
            console.print(f"traces: resumed, {summary['resumed_examples']:,} examples answered by an earlier run")
        console.print(f"traces: {summary['accepted']:,} accepted of {summary['attempted']:,} "
                      f"({summary['acceptance_rate']:.1%}); {summary['skipped_target_not_candidate']:,} skipped "
                      "(target not a candidate)")

    def run_sft(self) -> None:
        from gr2.recipes.sft import sft
        from gr2.traces import load_traces

        if self._done(self.layout.sft / "model"):
            return
        self._start_training(self.layout.sft)
        sft(self.layout.midtrain / "model", load_traces(self.layout.traces), self.catalog, self.layout.sft,
            self.recipe.sft)

    def run_rl(self, rewards: Sequence[str] | None = None) -> None:
        """Stage 3 from the SFT model, once per reward variant (conditional, and naive as the baseline)."""
        from rl.config import dapo_config
        from rl.dapo import compare_reward_curves, train_rl

        section = self.recipe.rl
        for reward in rewards or section.rewards:
            if reward not in ("conditional", "naive"):
                raise DataError(f"unknown reward {reward!r}; available: ['conditional', 'naive']")
            out = self.layout.rl(reward)
            if self._done(out / "model"):
                continue
            self._start_training(out)
            config = dapo_config(section.dapo, seed=self.recipe.seed, reward=reward)
            examples = self.examples("train", section.max_examples, self.recipe.seed, with_target=True)
            train_rl(self.layout.sft / "model", examples, self.catalog, out, config, self.layout.sft / "adapter")
        if is_main_process():
            runs = {f"RL-{reward}": self.layout.rl(reward) for reward in ("naive", "conditional")}
            for path in compare_reward_curves(runs, self.layout.eval):
                console.print(f"-> {path}")

    def run_eval(self, models: dict[str, Path] | None = None) -> dict[str, list[dict]]:
        from evals.report import write_report
        from gr2.evaluate import METRIC_COLUMNS, rerank_metrics
        from gr2.reranker import load_reranker

        if models is None:
            candidates = [("stage 1", self.layout.midtrain / "model"), ("SFT", self.layout.sft / "model"),
                          ("RL-naive", self.layout.rl("naive") / "model"),
                          ("RL-conditional", self.layout.rl("conditional") / "model")]
            models = {name: path for name, path in candidates if path.exists()
                      and (name != "stage 1" or self.recipe.eval.stage1_row)}
            if self.recipe.eval.models == "served" and models:  # as gr2 serve picks: RL-conditional, SFT, stage 1
                best = next(n for n in ("RL-conditional", "SFT", "stage 1", "RL-naive") if n in models)
                models = {best: models[best]}
        section = self.recipe.eval
        # Rerankers only run where the target is a candidate (elsewhere no order can find it); end-to-end
        # metrics count every user of the split, each user without the target as a miss.
        from data.candidates import load_candidate_summary

        recall = load_candidate_summary(self.layout.ranker)["recall"]
        splits = {s: self.examples(s, section.max_users, self.recipe.seed, with_target=True) for s in section.splits}
        tables: dict[str, list[dict]] = {s: [{"system": "pre-rank", **rerank_metrics(ex, None, recall[s])}]
                                         for s, ex in splits.items()}
        teacher: dict[str, list] = {}  # the greedy teacher's answers: a row, and each row's top-1 agreement with it
        if section.teacher_row and self.recipe.traces.teacher == "heuristic":
            for split, examples in splits.items():
                teacher[split] = self.teacher_answers(examples)
                tables[split].append({"system": "heuristic teacher (greedy)",
                                      **rerank_metrics(examples, teacher[split], recall[split], teacher[split])})
        # Constrained decoding (as served) guarantees a valid permutation; the free-decoding row shows what the
        # model itself writes, which is where the format-valid rate means something.
        variants = [("", section.generation)]
        if section.generation.constrained and section.free_decoding_rows:
            variants.append((" (free decoding)", dataclasses.replace(section.generation, constrained=False)))
        stage1 = self.layout.stage1_recommender
        if section.likelihood_row and stage1.exists():  # the stage-1 model's own order: no generation
            for split, row in self.stage1_likelihood_rows(list(splits), recall, teacher).items():
                tables[split].append(row)
        # one model's engine at a time, started only when an answer is not kept already (load_reranker closes the
        # previous model's engine, and reuses it for another variant of the same model)
        loaded: dict = {"key": None, "reranker": None}

        def decode(path: Path, settings, examples: list) -> list:
            if loaded["key"] != (path, settings):
                loaded["reranker"] = load_reranker(path, self.catalog, settings, reuse=loaded["reranker"])
                loaded["key"] = (path, settings)
            return loaded["reranker"].rerank(examples, progress=True)

        for name, path in models.items():
            for suffix, settings in variants:
                for split, examples in splits.items():
                    if suffix and section.free_decoding_users and len(examples) > section.free_decoding_users:
                        # the free rows measure what the model writes unaided: a seeded subset says it as well
                        rng = np.random.default_rng(self.recipe.seed)
                        keep = np.sort(rng.choice(len(examples), section.free_decoding_users, replace=False))
                        examples = [examples[i] for i in keep]
                    answers = self.cached_answers(f"{name}{suffix}", split, path, settings, examples,
                                                  lambda p=path, st=settings, ex=examples: decode(p, st, ex))
                    reference = teacher.get(split) if len(examples) == len(splits[split]) else None
                    tables[split].append({"system": name + suffix,
                                          **rerank_metrics(examples, answers, recall[split], reference)})
        if loaded["reranker"] is not None:
            loaded["reranker"].close()
        for split, rows in tables.items():
            paths = write_report(self.layout.eval, f"rerank-{split}", f"Rerank on {self.dataset.name} ({split})",
                                 rows, METRIC_COLUMNS, plot_columns=("R@1", "R@5", "NDCG@5", "valid", "identity"))
            console.print(paths["md"].read_text(), markup=False, highlight=False, soft_wrap=True)
        if section.stage1_full_ranking and stage1.exists():
            self.run_stage1_eval()
        return tables

    def run_diagnose(self, name: str, model_dir: Path, split: str = "valid") -> dict:
        """Where a reranker's order departs from the pre-rank order and from the greedy teacher's
        (``gr2.diagnose``), on the split's users whose target is a candidate; writes
        RUN/eval/diagnose-NAME-SPLIT.{json,md,png}."""
        from evals.report import line_chart, markdown_table
        from gr2.diagnose import disagreement_profile
        from gr2.reranker import load_reranker

        section = self.recipe.eval
        examples = self.examples(split, section.max_users, self.recipe.seed, with_target=True)
        teacher = self.teacher_answers(examples)
        reranker = load_reranker(model_dir, self.catalog, section.generation)
        try:
            student = reranker.rerank(examples, progress=True)
        finally:
            reranker.close()
        others = {}
        if section.generation.max_reasoning_tokens == 0:  # what it knows: its first-slot distribution, whole
            from gr2.first_slot import FirstSlotReranker

            first = FirstSlotReranker.from_dir(model_dir, self.catalog)
            others["student (first-slot scores)"] = [a.order for a in first.rerank(examples, progress=True)]
            first.close()
        profile = disagreement_profile(examples, [a.order for a in student], [t.order for t in teacher],
                                       head=self.recipe.traces.heuristic.promote, others=others)
        profile.update(model=str(model_dir), split=split, name=name)
        stem = f"diagnose-{name.replace(' ', '-')}-{split}"
        columns = [c for c in profile["rows"][0] if c != "system"]
        table = markdown_table(profile["rows"], columns)
        agreement = profile["position agreement"]
        k = len(agreement["student = teacher"])
        positions = markdown_table([{"position": j + 1, **{key: v[j] for key, v in agreement.items()}}
                                    for j in range(k)], list(agreement), label="position")
        if is_main_process():
            out = self.layout.eval
            write_json_atomic(out / f"{stem}.json", profile)
            write_text_atomic(out / f"{stem}.md", f"# {name} against the pre-rank order and the teacher "
                              f"({self.dataset.name} {split}, {profile['users']:,} users)\n\n{table}\n"
                              f"## Agreement per answer position\n\n{positions}")
            line_chart(out / f"{stem}.png", {key: (range(1, k + 1), v) for key, v in agreement.items()},
                       f"{name}: agreement per position ({split})", xlabel="answer position", ylabel="share")
            console.print((out / f"{stem}.md").read_text(), markup=False, highlight=False, soft_wrap=True)
        return profile

    def cached_answers(self, system: str, split: str, model_dir: Path, settings, examples: list, produce):
        """A model's answers on a split, kept in RUN/eval/answers/ so that an evaluation killed part-way (a
        split of every Games user takes tens of minutes on 2 cores) resumes at the next model and split; reused
        only for the same model files, decoding settings, prompt options and users."""
        import hashlib

        from gr2.rerank_format import ParsedAnswer

        weights = sorted(Path(model_dir).glob("*.safetensors"))
        key = {"system": system, "split": split, "model": str(model_dir),
               "model_mtime": [w.stat().st_mtime for w in weights], "settings": dataclasses.asdict(settings),
               "answer_format": self.recipe.answer_format, "prompt_evidence": self.recipe.prompt_evidence,
               "users": hashlib.sha1(repr([(e.user, e.target, e.candidates) for e in examples]).encode()).hexdigest()}
        path = self.layout.eval / "answers" / f"{system.replace(' ', '-')}-{split}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                console.print(f"{system} on {split}: {len(examples):,} answers from {path}")
                return [ParsedAnswer(**a) for a in saved["answers"]]
        answers = produce()
        if is_main_process():
            write_json_atomic(path, {"key": key, "answers": [dataclasses.asdict(a) for a in answers]})
        return answers

    def stage1_likelihood_rows(self, splits: list[str], recall: dict[str, float],
                               teacher: dict[str, list] | None = None) -> dict[str, dict]:
        """Per split, the rerank row of the stage-1 model's candidate-likelihood order (``eval.max_users`` users
        whose target is a candidate, the same as the other rows), with the longer history stage 1 trained on."""
        from gr2.evaluate import rerank_metrics
        from gr2.sid_lm import LikelihoodReranker, LikelihoodSettings

        history = self.recipe.midtrain.mixture.sequence_length
        reranker = LikelihoodReranker.from_dir(self.layout.stage1_recommender, self.catalog,
                                               LikelihoodSettings(max_history=history))
        rows = {}
        for split in splits:
            examples = self.examples(split, self.recipe.eval.max_users, self.recipe.seed, with_target=True,
                                     max_history=history)
            rows[split] = {"system": "stage 1 (SID likelihood)",
                           **rerank_metrics(examples, reranker.rerank(examples, progress=True), recall[split],
                                            (teacher or {}).get(split))}
        return rows

    def teacher_answers(self, examples: list):
        """The heuristic teacher's greedy answers (no sampling noise), as parsed rerank answers: its eval row,
        and on train the policy the SFT traces distil."""
        from gr2.rerank_format import parse_answer

        teacher = self.teacher()
        teacher.config = dataclasses.replace(teacher.config, temperature=0.0)
        rng = np.random.default_rng(self.recipe.seed)
        return [parse_answer(teacher.reply(ex, self.catalog.messages(ex), False, rng).text,
                             self.catalog.answer_keys(ex)) for ex in examples]

    def run_stage1_eval(self) -> dict[str, list[dict]]:
        """The stage-1 model as a full-ranking recommender (beam search over the catalogue's SIDs) beside the
        pre-ranker (SASRec) and co-occurrence, on the same users: HR@10 / NDCG@10 with history items excluded."""
        from evals.metrics import ranks_in_lists, summarize
        from evals.report import write_report
        from gr2.base_model import load_base_model
        from gr2.sid_lm import LikelihoodSettings, SIDLikelihood
        from rankers.evaluate import eval_ranks
        from rankers.run import fit_retriever, make_config, read_run_config

        section, ds = self.recipe.eval, self.dataset
        model, tokenizer = load_base_model(self.layout.stage1_recommender)
        history = self.recipe.midtrain.mixture.sequence_length
        scorer = SIDLikelihood(model, tokenizer, self.catalog.sids, LikelihoodSettings(max_history=history))
        pre = read_run_config(self.layout.ranker)
        rankers = {"co-occurrence": fit_retriever("cooc", make_config("cooc", {}), ds, ds.train_sequences())}
        if pre["model"] == "sasrec":
            from rankers.train import SASRecScorer, load_model

            cfg = make_config("sasrec", pre["model_config"])
            rankers["SASRec (pre-ranker)"] = SASRecScorer(load_model(self.layout.ranker, cfg.device), cfg.device)
        tables = {}
        for split in section.splits:
            examples = ds.eval_examples(split)
            if section.full_ranking_users and len(examples) > section.full_ranking_users:
                rows = np.sort(np.random.default_rng(self.recipe.seed).choice(
                    len(examples), size=section.full_ranking_users, replace=False))
                examples = type(examples)(examples.users[rows], [examples.histories[i] for i in rows],
                                          examples.targets[rows])
            table = [{"system": name, **summarize(eval_ranks(r, examples), ks=(10,), ndcg_ks=(10,))}
                     for name, r in rankers.items()]
            top = scorer.top_items(examples.histories, k=10, progress=True)
            table.append({"system": "stage 1 (beam search over SIDs)",
                          **summarize(ranks_in_lists(top, examples.targets), ks=(10,), ndcg_ks=(10,))})
            for row in table:
                row["mrr"] = None  # lists stop at 10: an MRR over them is not the full-ranking one
            tables[split] = table
            if is_main_process():
                paths = write_report(self.layout.eval, f"stage1-full-{split}",
                                     f"Stage 1 as a recommender on {ds.name} ({split}, full ranking)", table,
                                     ("hr@10", "ndcg@10", "users"), plot_columns=("hr@10", "ndcg@10"))
                console.print(paths["md"].read_text(), markup=False, highlight=False, soft_wrap=True)
        return tables

    def run_stage1_rerank_eval(self) -> dict[str, list[dict]]:
        """Stage 1 as a reranker of the pre-ranker's top K (no generation), against the pre-rank order."""
        from data.candidates import load_candidate_summary
        from evals.report import write_report
        from gr2.evaluate import METRIC_COLUMNS, rerank_metrics

        section = self.recipe.eval
        recall = load_candidate_summary(self.layout.ranker)["recall"]
        rows = self.stage1_likelihood_rows(list(section.splits), recall)
        tables = {}
        for split, row in rows.items():
            examples = self.examples(split, section.max_users, self.recipe.seed, with_target=True)
            tables[split] = [{"system": "pre-rank", **rerank_metrics(examples, None, recall[split])}, row]
            if is_main_process():
                paths = write_report(self.layout.eval, f"stage1-rerank-{split}",
                                     f"Stage 1 candidate likelihood on {self.dataset.name} ({split})", tables[split],
                                     METRIC_COLUMNS, plot_columns=("R@1", "R@5", "NDCG@5"))
                console.print(paths["md"].read_text(), markup=False, highlight=False, soft_wrap=True)
        return tables

    # -- the whole run ---------------------------------------------------------------------------
    def run(self, stages: Sequence[str] = STAGES, rl_rewards: Sequence[str] | None = None) -> dict[str, float]:
        """Run ``stages`` in order, recording the recipe, timings and manifest; ``rl_rewards`` picks the
        RL variants (default: the recipe's)."""
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise DataError(f"unknown stage(s) {unknown}; stages: {list(STAGES)}")
        # Under `accelerate launch` every rank runs the stage; only rank 0 writes the run's own files.
        main = is_main_process()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        if main:
            write_text_atomic(self.layout.root / "recipe.yaml",
                              yaml.safe_dump(recipe_dict(self.recipe), sort_keys=False))
        for stage in stages:
            console.rule(f"[bold]{stage}")
            start = time.perf_counter()
            if stage == "rl":
                self.run_rl(rl_rewards)
            else:
                getattr(self, f"run_{stage}")()
            self.timings[stage] = round(time.perf_counter() - start, 1)
            if main:
                write_json_atomic(self.layout.root / "timings.json", self.timings)
        if main:
            write_manifest(self.layout.root, kind="gr2-run", config=dataclasses.asdict(self.recipe),
                           seed=self.recipe.seed, metrics={"seconds": self.timings})
        return self.timings

