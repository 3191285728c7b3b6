"""``gr2 hilight train|eval|apply``: the emphasis actor of a run (``RUN/hilight/``), wiring only.

The recipe's ``hilight:`` section (``hilight.config.HiLightConfig``) says which backbone the actor
starts from, the budget, the frozen solver (default: the run's SFT model through vLLM, as served),
GRPO's settings and what evaluation compares.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from data.errors import DataError
from gr2.cli.common import console, friendly_errors
from gr2.cli.run_options import ForceOption, RecipeOption, RunOption, SetOption, make_pipeline

app = typer.Typer(no_args_is_help=True)


def _setup(recipe: Path, run: Path | None, sets: list[str], force: bool = False):  # noqa: ANN202
    from hilight.config import hilight_config

    pipeline = make_pipeline(recipe, run, sets, force)
    if not (pipeline.layout.ranker / "candidates" / "summary.json").is_file():
        raise DataError("the run has no candidate files yet (run the pipeline first: gr2 quickstart --no-serve)",
                        pipeline.layout.root)
    return pipeline, hilight_config(pipeline.recipe.hilight), pipeline.layout.root / "hilight"


def _model(run: Path, name: str) -> Path:
    from hilight.solver import resolve_model

    try:
        return resolve_model(run, name)
    except FileNotFoundError as exc:
        raise DataError(str(exc), run) from None


def _backbone(run: Path, name: str) -> str:
    """The actor's backbone: a stage of the run, a model directory, or a name ``load_base_model`` knows
    (``gemma3-270m``, converted from its package)."""
    from hilight.solver import resolve_model

    try:
        return str(resolve_model(run, name))
    except FileNotFoundError:
        if "/" in name or name.startswith("."):
            raise DataError(f"no model for actor.backbone {name!r}", run) from None
        return name


def _tokenizer(run: Path, name: str):  # noqa: ANN202 - a Hugging Face tokenizer
    """The backbone's tokenizer: what the budget counts tokens with when no actor is loaded."""
    from transformers import AutoTokenizer

    spec = _backbone(run, name)
    if Path(spec).is_dir():
        return AutoTokenizer.from_pretrained(spec)
    from gr2.base_model import load_base_model

    return load_base_model(spec)[1]


@app.command("train")
@friendly_errors
def train_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
              force: bool = ForceOption) -> None:
    """GRPO on train-split examples against the frozen solver; selects on valid; RUN/hilight/actor + curves."""
    import time

    from data.artifacts import write_manifest
    from hilight.actor import EmphasisActor
    from hilight.solver import build_solver
    from hilight.train import HiLightTrainer

    pipeline, config, out = _setup(recipe, run, set_, force)
    if (out / "actor" / "actor.pt").is_file() and not force:
        console.print(f"hilight: {out / 'actor'} exists (--force retrains)")
        return
    if force:
        for path in [*out.glob("checkpoint-*"), out / "best", out / "actor"]:
            shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    actor = EmphasisActor.from_backbone(_backbone(pipeline.layout.root, config.actor.backbone), config.actor)
    t = config.training
    train = pipeline.examples("train", t.max_examples, pipeline.recipe.seed, with_target=True)
    valid = pipeline.examples("valid", 0, pipeline.recipe.seed, with_target=True)
    solver_model = config.solver.model if config.solver.kind == "openai" else \
        str(_model(pipeline.layout.root, config.solver.model))
    console.print(f"hilight: actor on {actor.source} ({config.actor.granularity}), solver {solver_model}, "
                  f"{len(train):,} train examples, {t.max_steps} steps of {t.examples_per_step} x "
                  f"{t.masks_per_example} masks")
    solver = build_solver(config.solver, pipeline.catalog, pipeline.layout.root)
    try:
        metrics = HiLightTrainer(actor, solver, pipeline.catalog, train, valid, out, config).train()
    finally:
        solver.close()
    write_manifest(out, kind="hilight-actor", config=metrics["config"], seed=t.seed,
                   metrics={"best": metrics["best"], "seconds": round(time.perf_counter() - started, 1),
                            "solver_calls": metrics["solver_calls"]})
    best = metrics["best"]
    console.print(f"hilight: best step {best['step']}: valid reward {best['valid_reward']:.4f} "
                  f"(unemphasised {best['valid_plain_reward']:.4f}, {best['users']} users) -> {out / 'actor'}")
    for path in metrics["curves"]:
        console.print(f"-> {path}")


@app.command("eval")
@friendly_errors
def eval_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
             actor: Path | None = typer.Option(None, help="Actor directory (default: RUN/hilight/actor, if trained)."),
             solver_model: str | None = typer.Option(None, help="Another solver than the recipe's: a stage of the "
                                                                "run (rl-conditional) or a model directory "
                                                                "(transfer: the actor is not retrained)."),
             name: str | None = typer.Option(None, help="Report name (default: eval, or eval-SOLVER)."),
             methods: str | None = typer.Option(None, help="Comma-separated methods (default: the recipe's).")) -> None:
    """Solver HR@5 / NDCG@5 with each emphasis method vs none (paired 95% CIs), solver sensitivity;
    writes RUN/hilight/eval/NAME-SPLIT.{json,md,png}."""
    import dataclasses

    from data.candidates import load_candidate_summary
    from data.embeddings import embed_items
    from hilight.actor import EmphasisActor
    from hilight.evaluate import evaluate_split
    from hilight.methods import build_methods
    from hilight.solver import build_solver

    pipeline, config, out = _setup(recipe, run, set_)
    run_dir = pipeline.layout.root
    names = [m.strip() for m in methods.split(",")] if methods else list(config.eval.methods)
    actor_dir = actor or out / "actor"
    loaded = None
    if "hilight" in names:
        if not (actor_dir / "actor.pt").is_file():
            if actor is not None:
                raise DataError("no actor.pt in the actor directory", actor_dir)
            console.print("hilight: no trained actor yet (gr2 hilight train); evaluating the baselines only")
            names.remove("hilight")
        else:
            loaded = EmphasisActor.load(actor_dir)
    solver_config = config.solver
    if solver_model:
        solver_config = dataclasses.replace(solver_config, model=solver_model)
    report = name or ("eval" if not solver_model else f"eval-{Path(solver_model).name}")
    tokenizer = loaded.tokenizer if loaded is not None else _tokenizer(run_dir, config.actor.backbone)
    embeddings = embed_items(pipeline.dataset, show_progress=False).vectors if "similarity" in names else None
    table = build_methods(names, config.budget, config.actor.granularity, config.actor.window, config.training.seed,
                          embeddings, loaded, pipeline.catalog, config.eval.decode, _teacher(pipeline, names))
    recall = load_candidate_summary(pipeline.layout.ranker)["recall"]
    if solver_config.kind == "gr2":
        _model(run_dir, solver_config.model)  # a clear error before an engine starts
    solver = build_solver(solver_config, pipeline.catalog, run_dir)
    extra = {"actor": str(actor_dir) if loaded is not None else None, "budget": dataclasses.asdict(config.budget),
             "actor_trained_against": _trained_against(actor_dir) if loaded is not None else None,
             "decode": config.eval.decode}
    try:
        for split in config.eval.splits:
            examples = pipeline.examples(split, config.eval.max_users, pipeline.recipe.seed, with_target=True)
            result = evaluate_split(examples, table, solver, pipeline.catalog, tokenizer, out / "eval",
                                    f"{report}-{split}", f"HiLight on {pipeline.dataset.name} ({split}), solver "
                                    f"{solver.name.split('/')[-2] if '/' in solver.name else solver.name}",
                                    recall.get(split), extra)
            console.print(result["paths"]["md"].read_text(), markup=False, highlight=False, soft_wrap=True)
    finally:
        solver.close()


def _teacher(pipeline, names: list[str]):  # noqa: ANN001, ANN202
    """The run's leak-free heuristic teacher (recipe ``traces.heuristic``) when the ``cited`` baseline is asked for:
    valid and test examples read the co-occurrence of all train sequences, as served prompts do."""
    if "cited" not in names:
        return None
    from gr2.teachers import HeuristicTeacher

    return HeuristicTeacher(pipeline.catalog, pipeline.cooccurrence, pipeline.recipe.traces.heuristic)


def _trained_against(actor_dir: Path) -> str | None:
    metrics = actor_dir.parent / "metrics.json"
    return json.loads(metrics.read_text()).get("solver") if metrics.is_file() else None


@app.command("headroom")
@friendly_errors
def headroom_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
                 split: str = typer.Option("valid", help="valid (before training an actor) or test."),
                 max_users: int = typer.Option(1000, help="A seeded sample of the split's users whose target is a "
                                                          "candidate; 0: all."),
                 solver_model: str | None = typer.Option(None, help="Another solver than the recipe's.")) -> None:
    """What emphasis could win with this solver: its answers with each single history item emphasised,
    the oracle best item per user, the effect by position; RUN/hilight/headroom-[SOLVER-]SPLIT.{json,md,png}."""
    import dataclasses

    from hilight.headroom import measure_headroom, write_headroom
    from hilight.solver import build_solver

    if split not in ("valid", "test"):
        raise DataError(f"--split must be valid or test, got {split!r}")
    pipeline, config, out = _setup(recipe, run, set_)
    run_dir = pipeline.layout.root
    solver_config = config.solver if not solver_model else dataclasses.replace(config.solver, model=solver_model)
    if solver_config.kind == "gr2":
        _model(run_dir, solver_config.model)
    examples = pipeline.examples(split, max_users, pipeline.recipe.seed, with_target=True)
    tokenizer = _tokenizer(run_dir, config.actor.backbone)
    solver = build_solver(solver_config, pipeline.catalog, run_dir)
    try:
        result = measure_headroom(examples, solver, pipeline.catalog, tokenizer, config.budget, progress=True)
    finally:
        solver.close()
    name = f"headroom-{Path(solver_model).name}-{split}" if solver_model else f"headroom-{split}"
    paths = write_headroom(result, out, name, f"Emphasis headroom on {pipeline.dataset.name} ({split}): each history "
                           f"item emphasised alone, solver {solver_config.model}",
                           extra={"solver": solver.name, "budget": dataclasses.asdict(config.budget)})
    console.print(paths["md"].read_text(), markup=False, highlight=False, soft_wrap=True)


@app.command("apply")
@friendly_errors
def apply_cmd(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
              split: str = typer.Option("test", help="train, valid or test."),
              limit: int = typer.Option(5, help="Examples to show (a seeded sample of those with the target listed)."),
              method: str = typer.Option("hilight", help="hilight or a baseline (random, recency, similarity, cited)."),
              actor: Path | None = typer.Option(None, help="Actor directory (default: RUN/hilight/actor)."),
              out_file: Path | None = typer.Option(None, "--out", help="Also write the emphasised prompts as JSONL.")
              ) -> None:
    """Show what a method emphasises in some users' histories (and write the rendered prompts)."""
    from data.artifacts import write_text_atomic
    from data.embeddings import embed_items
    from gr2.rerank_format import EMPHASIS_CLOSE, EMPHASIS_OPEN
    from hilight.actor import EmphasisActor
    from hilight.methods import build_methods
    from hilight.spans import HistoryLayout, kept_share, render_messages

    if split not in ("train", "valid", "test"):
        raise DataError(f"--split must be train, valid or test, got {split!r}")
    pipeline, config, out = _setup(recipe, run, set_)
    loaded = None
    if method == "hilight":
        actor_dir = actor or out / "actor"
        if not (actor_dir / "actor.pt").is_file():
            raise DataError("no trained actor (gr2 hilight train first, or --actor DIR)", actor_dir)
        loaded = EmphasisActor.load(actor_dir)
    tokenizer = loaded.tokenizer if loaded is not None else _tokenizer(pipeline.layout.root, config.actor.backbone)
    embeddings = embed_items(pipeline.dataset, show_progress=False).vectors if method == "similarity" else None
    chosen = build_methods([method], config.budget, config.actor.granularity, config.actor.window,
                           config.training.seed, embeddings, loaded, pipeline.catalog, config.eval.decode,
                           _teacher(pipeline, [method]))[method]
    examples = pipeline.examples(split, limit, pipeline.recipe.seed, with_target=True)
    layouts = [HistoryLayout.for_example(tokenizer, pipeline.catalog, ex) for ex in examples]
    records = []
    for ex, layout, emphasis in zip(examples, layouts, chosen(examples, layouts), strict=True):
        messages = render_messages(pipeline.catalog, ex, emphasis.spans, emphasis.instruction)
        history = messages[-1]["content"].split("\n\nCandidates")[0]
        console.rule(f"user {pipeline.dataset.user_ids[ex.user]}: {len(emphasis.spans)} spans, "
                     f"{kept_share(layout, emphasis.spans):.0%} of the history's tokens")
        console.print(_highlighted(history, EMPHASIS_OPEN, EMPHASIS_CLOSE), highlight=False, soft_wrap=True)
        records.append({"user": pipeline.dataset.user_ids[ex.user], "method": method,
                        "spans": [{"history_index": s.item, "start": s.start, "end": s.end,
                                   "text": layout.lines[s.item][s.start:s.end]} for s in emphasis.spans],
                        "messages": messages})
    if out_file is not None:
        write_text_atomic(out_file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        console.print(f"-> {out_file}")


def _highlighted(text: str, open_tag: str, close_tag: str):  # noqa: ANN202 - a rich Text
    """The tagged text with the tags shown as reverse video (titles may hold brackets: no markup parsing)."""
    import re

    from rich.text import Text

    out, inside = Text(), False
    for part in re.split(f"({re.escape(open_tag)}|{re.escape(close_tag)})", text):
        if part in (open_tag, close_tag):
            inside = part == open_tag
        elif part:
            out.append(part, style="bold reverse" if inside else None)
    return out
