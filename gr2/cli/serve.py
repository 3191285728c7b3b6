"""``gr2 serve --run DIR``: the HTTP rerank service for a trained run (uvicorn + in-process vLLM)."""

from __future__ import annotations

from pathlib import Path

import typer

from data.errors import DataError
from gr2.cli.common import console, friendly_errors

MODEL_PREFERENCE = ("rl-conditional", "sft", "stage1")


def pick_model(run: Path) -> Path:
    for name in MODEL_PREFERENCE:
        if (run / name / "model" / "config.json").is_file():
            return run / name / "model"
    raise DataError(f"no trained model in the run (looked for {[f'{n}/model' for n in MODEL_PREFERENCE]})", run)


@friendly_errors
def serve(
    run: Path = typer.Option(..., help="A run directory written by `gr2 quickstart` / `gr2 train`."),
    model: Path | None = typer.Option(None, help="Model directory to serve (default: the run's best stage)."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    timeout_s: float = typer.Option(30.0, help="Per-request deadline; then the pre-rank order is returned."),
    max_candidates: int = typer.Option(50),
    max_history: int = typer.Option(50),
    gpu_memory_utilization: float = typer.Option(0.1, help="On CPU: the share of RAM for vLLM's KV cache."),
    tensor_parallel_size: int = typer.Option(1),
    data_parallel_size: int = typer.Option(1),
) -> None:
    """Serve POST /v1/rerank, GET /healthz, GET /metrics and the OpenAPI schema."""
    import uvicorn
    import yaml

    from data.prepare import load_prepared
    from gr2.rerank_data import ItemCatalog
    from serving.app import ServeLimits, create_app
    from serving.engine import EngineSettings, RerankEngine
    from tokenizer.fit import load_semantic_ids

    recipe_file = run / "recipe.yaml"
    if not recipe_file.is_file():
        raise DataError("not a run directory (no recipe.yaml)", run)
    dataset = yaml.safe_load(recipe_file.read_text())["dataset"]
    catalog = ItemCatalog.build(load_prepared(dataset), load_semantic_ids(run / "sid"))
    model_dir = model or pick_model(run)
    engine = RerankEngine(EngineSettings(str(model_dir), timeout_s=timeout_s,
                                         gpu_memory_utilization=gpu_memory_utilization,
                                         tensor_parallel_size=tensor_parallel_size,
                                         data_parallel_size=data_parallel_size))
    app = create_app(engine, catalog, f"gr2-{dataset}-{model_dir.parent.name}",
                     ServeLimits(max_candidates=max_candidates, max_history=max_history))
    console.print(f"serving {model_dir} for {dataset} on http://{host}:{port} (docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
