"""Bad ranker configuration: a ``DataError`` subclass so the CLI prints it cleanly (exit 2)."""

from __future__ import annotations

from data.errors import DataError


class ConfigError(DataError):
    """A configuration value that cannot be used here; the message names what is available."""
