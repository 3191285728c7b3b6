"""Bad ranker configuration: a ``DataError`` subclass so the CLI prints it cleanly (exit 2).

The class lives in ``data.errors`` so that every config (recipes, ranker, tokenizer) raises the same one.
"""

from __future__ import annotations

from data.errors import ConfigError

__all__ = ["ConfigError"]
