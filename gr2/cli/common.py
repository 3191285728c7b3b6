"""What every subcommand shares: turning a ``DataError`` into a clean message and exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from data.errors import DataError

console = Console()
# Errors are never hard-wrapped: users copy the file paths and messages out of them.
err_console = Console(stderr=True, soft_wrap=True)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input is the user's to fix: print where and what, no traceback, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DataError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, str(value) if isinstance(value, bool) else f"{value:,}" if isinstance(value, int) else
                      f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
