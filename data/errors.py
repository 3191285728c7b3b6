"""One error type for bad input data, always naming the file and, where there is one, the line."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Input data that cannot be used as it is: says where and what was expected."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.message}" if where else self.message


class ConfigError(DataError):
    """A configuration value that cannot be used here; the message names the key and what is available."""
