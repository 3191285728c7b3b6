"""``gr2 bench serve`` and ``gr2 bench load``: the server measured from outside, over loopback HTTP.

bench serve: the same model served twice by ``gr2 serve``, once on vLLM and once on plain
``transformers`` generate behind the same HTTP app (``--engine transformers``: waiting requests,
up to 32, are batched into one left-padded ``generate``). Both get the same rerank prompts (10
candidates) and generate exactly ``max_new_tokens`` tokens per answer (``--exact-tokens``: no
grammar, EOS ignored, so an untrained model's junk costs both sides the same). For each
concurrency a closed loop of that many clients runs for ``seconds``; throughput, p50/p99 latency
and the vLLM / transformers ratio are printed and written as JSON + Markdown.

bench load: the must-show soak: N clients for S seconds against ``gr2 serve --run DIR``, counting
errors and checking that every answer is a valid permutation (``serving.load``); with the server's
concurrency bound set low, it also shows refusals (429 + Retry-After) answered in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from data.artifacts import gr2_home, write_json_atomic
from data.errors import DataError

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "ml-100k-tiny.yaml"


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def build_bench_run(out: Path, recipe: Path = RECIPE) -> Path:
    """A run directory with an untrained model of the recipe's tiny size (the size stages 0-3 train):
    ML-100K, RQ-KMeans semantic IDs, the SID tokens added to the vocabulary. Built once, then reused."""
    from data.prepare import PrepareConfig, load_prepared, prepare
    from gr2.base_model import TinyModelConfig, build_tiny_model
    from gr2.recipes.common import save_model
    from tokenizer.fit import fit_dataset, load_semantic_ids
    from tokenizer.vocab import extend_vocabulary

    if (out / "model" / "config.json").is_file() and (out / "recipe.yaml").is_file():
        return out
    values = yaml.safe_load(recipe.read_text())
    try:
        ds = load_prepared(values["dataset"])
    except DataError:
        ds = prepare(PrepareConfig(values["dataset"]))
    if not (out / "sid" / "report.json").is_file():
        fit_dataset(ds, values.get("tokenizer", {}).get("method", "rq-kmeans"), out / "sid")
    sids = load_semantic_ids(out / "sid")
    model, tok = build_tiny_model(ds.item_texts(), TinyModelConfig(**values["tiny_model"]))
    extend_vocabulary(tok, model, sids, item_texts=ds.item_texts())
    save_model(model, tok, out / "model")
    (out / "recipe.yaml").write_text(yaml.safe_dump({"dataset": ds.name, "max_history": values.get("max_history", 10),
                                                     "ranker": {"k": 10}}))
    return out


def run_requests(run: Path, n: int, k: int = 10):  # noqa: ANN201 - list[LoadRequest]
    """Rerank requests from the run's test split (its pre-ranker lists when it has them)."""
    from data.candidates import load_candidates
    from data.prepare import load_prepared
    from gr2.rerank_data import ItemCatalog
    from serving.load import rerank_requests
    from tokenizer.fit import load_semantic_ids

    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    ds = load_prepared(recipe["dataset"])
    catalog = ItemCatalog.build(ds, load_semantic_ids(run / "sid"))
    frame = None
    if (run / "ranker" / "candidates" / "test.parquet").is_file():
        frame = load_candidates(run / "ranker", "test")
    return ds, catalog, rerank_requests(ds, catalog, n=n, k=k, max_history=int(recipe.get("max_history", 10)),
                                        candidates=frame)


def bench_serve(run: Path | None = None, model: Path | None = None, out_dir: Path | None = None,
                concurrency: Sequence[int] = (1, 8, 32), seconds: float = 20.0, max_new_tokens: int = 64,
                engines: Sequence[str] = ("vllm", "transformers"),
                progress: Callable[[str], None] = print) -> dict:
    from evals.report import write_report
    from serving.load import ServerProcess, run_load

    out_dir = Path(out_dir or gr2_home() / "bench" / "serve")
    if run is None:
        progress("building the benchmark model (the recipe's tiny size, untrained; once)")
        run = build_bench_run(gr2_home() / "bench" / "serve-run")
    model = model or (run / "model" if (run / "model" / "config.json").is_file() else None)
    _, _, requests = run_requests(run, n=256)
    common = ["--run", str(run), "--max-new-tokens", str(max_new_tokens), "--exact-tokens", "--timeout-s", "600",
              "--max-candidates", "50", *(["--model", str(model)] if model else [])]
    rows: list[dict] = []
    per_engine: dict[str, dict] = {}
    for engine in engines:
        progress(f"starting gr2 serve --engine {engine}")
        load_before = load_average()
        with ServerProcess([*common, "--engine", engine], out_dir / f"server-{engine}.log") as server:
            asyncio.run(run_load(server.url, requests, clients=4, seconds=3, timeout_s=600))  # warm-up
            for c in concurrency:
                progress(f"{engine}: {c} concurrent clients for {seconds:.0f} s")
                batches_before = server.health().get("batches")
                stats = asyncio.run(run_load(server.url, requests, clients=c, seconds=seconds, timeout_s=600))
                batches = server.health().get("batches")
                row = {"system": f"{engine} c={c}", "engine": engine, "concurrency": c,
                       "req/s": stats["requests_per_second"], "p50 ms": stats["p50_ms"], "p99 ms": stats["p99_ms"],
                       "prompt tokens": stats["mean_prompt_tokens"], "tokens/answer": stats["mean_completion_tokens"],
                       "requests": stats["ok"], "errors": stats["errors"] + stats["invalid"],
                       "load avg": load_average()}
                if batches and batches_before and batches["count"] > batches_before["count"]:
                    row["mean batch"] = round((batches["requests"] - batches_before["requests"])
                                              / (batches["count"] - batches_before["count"]), 2)
                rows.append(row)
                progress(f"  {row}")
                per_engine.setdefault(engine, {})[f"c={c}"] = stats
        per_engine[engine]["load_average_before"] = load_before
    ratios = {}
    if {"vllm", "transformers"} <= set(per_engine):
        for c in concurrency:
            hf = per_engine["transformers"][f"c={c}"]["requests_per_second"]
            ratios[c] = round(per_engine["vllm"][f"c={c}"]["requests_per_second"] / hf, 2) if hf else None
            rows.append({"system": f"vllm / transformers c={c}", "req/s": ratios[c]})
    note = (f"same {len(requests)} rerank prompts (10 candidates, test split) on both engines, each answer exactly "
            f"{max_new_tokens} tokens (unconstrained, EOS ignored); closed loop of c clients for {seconds:.0f} s over "
            f"loopback HTTP to `gr2 serve`; transformers batches the waiting requests (up to 32) into one "
            f"left-padded generate")
    extra = {"note": note, "model": str(model), "run": str(run), "max_new_tokens": max_new_tokens,
             "seconds": seconds, "ratio_vllm_over_transformers": {f"c={c}": r for c, r in ratios.items()},
             "raw": per_engine,
             "cpu_count": os.cpu_count(), "load_average_after": load_average()}
    columns = ["req/s", "p50 ms", "p99 ms", "prompt tokens", "tokens/answer", "mean batch", "requests", "errors",
               "load avg"]
    paths = write_report(out_dir, "serve", "Serving throughput: vLLM vs transformers generate", rows, columns,
                         plot_columns=["req/s"], extra=extra)
    return {"rows": rows, "ratios": ratios, "note": note, "paths": paths}


def bench_load(run: Path, clients: int = 64, seconds: float = 60.0, url: str | None = None,
               out: Path | None = None, serve_args: Sequence[str] = (), recommend_share: float = 0.25,
               progress: Callable[[str], None] = print) -> dict:
    """``clients`` closed-loop clients for ``seconds`` against ``gr2 serve --run RUN`` (or ``url``)."""
    from serving.load import ServerProcess, mix, recommend_requests, run_load

    ds, catalog, rerank = run_requests(run, n=300)
    has_ranker = (run / "ranker" / "config.json").is_file()
    n_rec = int(len(rerank) * recommend_share / max(1e-9, 1 - recommend_share)) if has_ranker else 0
    requests = mix(rerank, recommend_requests(ds, catalog, n=n_rec) if n_rec else [])
    out = Path(out or run / "bench" / "load.json")

    def drive(base: str) -> dict:
        progress(f"{clients} clients for {seconds:.0f} s against {base} ({len(requests)} distinct requests, "
                 f"{n_rec} of them /v1/recommend)")
        before = load_average()
        start = time.time()
        stats = asyncio.run(run_load(base, requests, clients=clients, seconds=seconds, timeout_s=300))
        return {**stats, "load_average_before": before, "load_average_after": load_average(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))}

    if url:
        stats = drive(url)
    else:
        progress(f"starting gr2 serve --run {run}")
        with ServerProcess(["--run", str(run), *serve_args], out.parent / "load-server.log") as server:
            stats = drive(server.url)
    report = {"run": str(run), "url": url, "cpu_count": os.cpu_count(), **stats}
    write_json_atomic(out, report)
    report["path"] = str(out)
    return report
