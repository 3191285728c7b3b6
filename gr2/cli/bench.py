"""``gr2 bench ...``: benchmarks that measure side by side in one run and print ratios.

Each command is wiring only; the measurement lives with the code it measures
(``tokenizer/bench.py``, ``rankers/bench.py``, ...).
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
