"""``gr2 quickstart``: the README's main job on the embedded default (MovieLens-100K, tiny model).

It ends the way the system is used: the demo page (Gradio) and the run's best model behind the HTTP
API (vLLM), answering a sample rerank request built from a test-split user, then serving until
Ctrl-C. Its recipe (``configs/ml-100k-quickstart.yaml``) cuts the benchmark recipe to what the demo
needs, so a fresh 2-core machine gets there in minutes; ``--recipe`` runs any other.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import typer

from gr2.cli.common import console, friendly_errors, print_table
from gr2.cli.run_options import QUICKSTART_RECIPE, ForceOption, RunOption, SetOption, make_pipeline


def sample_request(run: Path, max_history: int) -> tuple[dict, dict]:
    """A /v1/rerank body from the first test-split user of the run's candidate lists, and what it stands for."""
    import yaml

    from data.candidates import load_candidates
    from data.prepare import load_prepared

    ds = load_prepared(yaml.safe_load((run / "recipe.yaml").read_text())["dataset"])
    row = load_candidates(run / "ranker", "test").iloc[0]
    ids = ds.items["item_id"].astype(str).tolist()
    history = ds.sequences[int(row["user"])][: int(row["history_len"])][-max_history:]
    body = {"history": [{"id": ids[i]} for i in history],
            "candidates": [{"id": ids[int(c)]} for c in row["candidates"]], "return_reasoning": True}
    titles = dict(zip(ids, ds.items["title"].astype(str).tolist(), strict=True))
    return body, {"user_id": str(row["user_id"]), "target": ids[int(row["target"])], "titles": titles}


def show_sample_answer(url: str, body: dict, meta: dict) -> None:
    from rich.table import Table

    request = urllib.request.Request(f"{url}/v1/rerank", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as r:
        answer = json.loads(r.read())
    table = Table(title=f"POST {url}/v1/rerank: test-split user {meta['user_id']} "
                        f"({len(body['history'])} history items, {len(body['candidates'])} candidates)")
    for col in ("rank", "pre-rank", "item id", "title", "score"):
        table.add_column(col, justify="left" if col == "title" else "right")
    for rank, res in enumerate(answer["results"], 1):
        held_out = " (held-out next item)" if res["id"] == meta["target"] else ""
        table.add_row(str(rank), str(res["index"] + 1), res["id"], meta["titles"].get(res["id"], "") + held_out,
                      f"{res['relevance_score']:.2f}")
    console.print(table)
    console.print(f"reasoning: {(answer.get('reasoning') or '-')[:300]}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"repaired: {answer['repaired']}  fallback: {answer['fallback']}  usage: {answer['usage']}")
    console.print(f"try it: curl -s {url}/v1/rerank -H 'content-type: application/json' -d "
                  f"'{json.dumps({**body, 'history': body['history'][-2:]})}'", markup=False, highlight=False,
                  soft_wrap=True)


@friendly_errors
def quickstart(recipe: Path = typer.Option(QUICKSTART_RECIPE, "--recipe",
                                           help="Recipe YAML (default: the quickstart's fast cut; the benchmark is "
                                                "configs/ml-100k-tiny.yaml)."),
               run: Path | None = RunOption, set_: list[str] = SetOption,
               force: bool = ForceOption,
               serve: bool = typer.Option(True, "--serve/--no-serve", help="Finish by serving the run's best model."),
               demo: bool = typer.Option(True, "--demo/--no-demo", help="Serve the Gradio demo beside the API."),
               host: str = typer.Option("127.0.0.1", help="Where to serve."),
               port: int = typer.Option(8000, help="Port to serve the API on (0: any free port)."),
               demo_port: int = typer.Option(7860, help="Port of the demo page (0: any free port)."),
               exit_after_sample: bool = typer.Option(False, help="Stop serving once the sample request is "
                                                                  "answered (tests, CI).")) -> None:
    """prepare -> semantic IDs -> SASRec + candidates -> stages 0-2 (3) -> evaluation -> API + demo, on MovieLens-100K.

    Each stage is skipped when an earlier run finished it, so a second quickstart starts in seconds.
    Ends with a stage-by-stage timing table, the time to a served model included."""
    from data.prepare import load_stats
    from gr2.cli.data import show_stats
    from gr2.cli.demo import serve_with_demo
    from gr2.cli.pipeline import STAGES
    from gr2.cli.serve import ServeOptions, serve_until_stopped

    started = time.perf_counter()
    pipeline = make_pipeline(recipe, run, set_, force)
    mark = time.perf_counter()
    show_stats(load_stats(pipeline.dataset.path))
    timings = {"prepare data": round(time.perf_counter() - mark, 1)}
    # evaluation last (kept when current); no RL stage (nor its imports) when the recipe has no RL reward
    timings.update(pipeline.run([s for s in STAGES if s != "eval" and (s != "rl" or pipeline.recipe.rl.rewards)]))
    if eval_is_current(pipeline):  # a rerun decodes nothing again: the reports already show these models
        console.print(f"eval: the reports in {pipeline.layout.eval} are newer than every model; kept")
        timings["eval (kept)"] = 0.0
    else:
        timings.update(pipeline.run(["eval"]))
    console.print(f"run directory: {pipeline.layout.root}")
    if not serve:
        print_timings(timings, started, "pipeline")
        return
    console.rule("[bold]serve")
    body, meta = sample_request(pipeline.layout.root, pipeline.recipe.max_history)
    serving_from = time.perf_counter()

    def on_ready(url: str) -> None:
        timings["served model answers"] = round(time.perf_counter() - serving_from, 1)
        print_timings(timings, started, "served model" + (" and demo" if demo else ""))
        show_sample_answer(url, body, meta)

    def on_page(url: str) -> None:
        timings["demo page up"] = round(time.perf_counter() - serving_from, 1)

    if demo:
        serve_with_demo(pipeline.layout.root, ServeOptions(), host, port, demo_port, on_ready=on_ready,
                        exit_after_ready=exit_after_sample, on_page=on_page)
    else:
        serve_until_stopped(pipeline.layout.root, ServeOptions(), host, port, on_ready=on_ready,
                            exit_after_ready=exit_after_sample)


def eval_is_current(pipeline) -> bool:  # noqa: ANN001 - a gr2.cli.pipeline.Pipeline
    """Whether each of the recipe's rerank reports exists and is newer than every model of the run."""
    layout = pipeline.layout
    reports = [layout.eval / f"rerank-{split}.json" for split in pipeline.recipe.eval.splits]
    if pipeline.force or not all(r.is_file() for r in reports):
        return False
    models = [layout.midtrain / "model", layout.sft / "model", layout.rl("naive") / "model",
              layout.rl("conditional") / "model"]
    newest = max((f.stat().st_mtime for m in models if m.is_dir() for f in m.iterdir()), default=0.0)
    return min(r.stat().st_mtime for r in reports) > newest


def print_timings(timings: dict[str, float], started: float, reached: str) -> None:
    """The stage table every quickstart ends with (a skipped stage shows its check, well under a second)."""
    total = round(time.perf_counter() - started, 1)
    print_table("quickstart wall time (s)", [*timings.items(), (f"total: start -> {reached}", total)])
