"""``gr2 quickstart``: the README's main job on the embedded default (MovieLens-100K, tiny model).

It ends the way the system is used: the run's best model behind the HTTP API (vLLM), answering a
sample rerank request built from a test-split user, then serving until Ctrl-C.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import typer

from gr2.cli.common import console, friendly_errors, print_table
from gr2.cli.run_options import ForceOption, RecipeOption, RunOption, SetOption, make_pipeline


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
def quickstart(recipe: Path = RecipeOption, run: Path | None = RunOption, set_: list[str] = SetOption,
               force: bool = ForceOption,
               serve: bool = typer.Option(True, "--serve/--no-serve", help="Finish by serving the run's best model."),
               host: str = typer.Option("127.0.0.1", help="Where to serve."),
               port: int = typer.Option(8000, help="Port to serve on (0: any free port)."),
               exit_after_sample: bool = typer.Option(False, help="Stop serving once the sample request is "
                                                                  "answered (tests, CI).")) -> None:
    """prepare -> semantic IDs -> SASRec + candidates -> stages 0-3 -> evaluation -> serving, on MovieLens-100K."""
    from data.prepare import load_stats
    from gr2.cli.data import show_stats
    from gr2.cli.serve import ServeOptions, serve_until_stopped

    pipeline = make_pipeline(recipe, run, set_, force)
    show_stats(load_stats(pipeline.dataset.path))
    timings = pipeline.run()
    print_table("stage wall time (s)", list(timings.items()))
    console.print(f"run directory: {pipeline.layout.root}")
    if not serve:
        return
    console.rule("[bold]serve")
    body, meta = sample_request(pipeline.layout.root, pipeline.recipe.max_history)
    serve_until_stopped(pipeline.layout.root, ServeOptions(), host, port,
                        on_ready=lambda url: show_sample_answer(url, body, meta), exit_after_ready=exit_after_sample)
