"""``gr2 demo``: the Gradio page over the rerank API, with the API served in this process or elsewhere.

``gr2 demo --run RUN`` serves the run's best model (as ``gr2 serve``) and the page beside it;
``gr2 demo --server-url URL --run RUN`` shows a server already running (the run directory adds users,
titles and evaluation reports). The page comes up first, in seconds; it says when the model server
is still loading and picks it up once it answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

from data.artifacts import gr2_home
from data.errors import DataError
from gr2.cli.common import console, friendly_errors
from gr2.cli.run_options import QUICKSTART_RECIPE
from gr2.cli.serve import ServeOptions, parse_lora, serve_until_stopped

DEFAULT_RUN = QUICKSTART_RECIPE.stem  # $GR2_HOME/runs/<this>: where `gr2 quickstart` leaves its run


def start_demo(run: Path | None, api_url: str, host: str, port: int, block: bool = False):  # noqa: ANN201
    """Build and launch the page for ``api_url``; returns (the Blocks app, its URL)."""
    from serving.demo import ApiClient, RunView, build_demo, launch

    view = RunView.load(run) if run is not None else None
    page = build_demo(ApiClient(api_url), view)
    if not block:
        return page, launch(page, host, port)
    console.print(f"demo on http://{host}:{port} for the server at {api_url}; Ctrl-C stops")
    launch(page, host, port, block=True)
    return page, f"http://{host}:{port}/"


def check_port(host: str, port: int, option: str) -> None:
    """A taken port is the user's to change: say so before anything loads."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DataError(f"cannot serve the demo on {host}:{port} ({exc.strerror}); pass another {option}") from None


def serve_with_demo(run: Path, opts: ServeOptions, host: str = "127.0.0.1", api_port: int = 8000,
                    demo_port: int = 7860, on_ready: Callable[[str], None] | None = None,
                    exit_after_ready: bool = False, on_page: Callable[[str], None] | None = None) -> None:
    """The page first (seconds), then the API in this process until Ctrl-C (the engine loads in about a
    minute on 2 cores; the page shows that and picks the server up when it answers)."""
    from serving.load import free_port

    api_port, demo_port = api_port or free_port(), demo_port or free_port()
    check_port(host, demo_port, "--demo-port / --port")
    page, url = start_demo(run, f"http://{host}:{api_port}", host, demo_port)
    console.print(f"[bold]demo: {url}[/] (the model answers once the server below is up)", highlight=False)
    if on_page is not None:
        on_page(url)
    try:
        serve_until_stopped(run, opts, host, api_port, on_ready=on_ready, exit_after_ready=exit_after_ready)
    finally:
        page.close()


def default_run() -> Path:
    return gr2_home() / "runs" / DEFAULT_RUN


@friendly_errors
def demo(run: Path | None = typer.Option(None, "--run", help="Run directory (default: the quickstart's, "
                                                             "$GR2_HOME/runs/ml-100k-quickstart)."),
         server_url: str | None = typer.Option(None, help="Show a rerank server already running here (e.g. "
                                                          "http://127.0.0.1:8000) instead of serving in this process."),
         host: str = typer.Option("127.0.0.1", help="Where to serve the page (and the API)."),
         port: int = typer.Option(7860, help="The page's port (0: any free port)."),
         api_port: int = typer.Option(8000, help="The API's port when served here (0: any free port)."),
         lora: list[str] = typer.Option([], help="Also serve a PEFT LoRA adapter as name=DIR (repeatable)."),
         model: Path | None = typer.Option(None, help="Model directory to serve (default: the run's best stage)."),
         timeout_s: float = typer.Option(60.0, help="Per-request deadline of the served engine.")) -> None:
    """The Gradio demo: Rerank, Cascade and Evaluation tabs over the HTTP API (Ctrl-C stops)."""
    explicit = run is not None
    run = run or default_run()
    if not (run / "recipe.yaml").is_file():
        if server_url and not explicit:
            run = None  # a remote server alone: typed histories work, users and evaluation need a run
        else:
            raise DataError("not a run directory (no recipe.yaml); `gr2 quickstart` makes one, or pass --run", run)
    if server_url:
        from serving.load import free_port

        port = port or free_port()
        check_port(host, port, "--port")
        start_demo(run, server_url.rstrip("/"), host, port, block=True)
        return
    started = time.perf_counter()
    opts = ServeOptions(model=model, lora=parse_lora(lora), timeout_s=timeout_s)
    serve_with_demo(run, opts, host, api_port, port,
                    on_ready=lambda url: console.print(f"model server ready after "
                                                       f"{time.perf_counter() - started:.0f} s at {url}"))
