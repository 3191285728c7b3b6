"""The interface every quantizer shares (``fit``, ``encode``, ``decode``, ``save``, ``load``) and the
input checks they all run, so bad embeddings fail early with a message instead of deep in faiss/torch.

On disk a quantizer is a directory: ``quantizer.json`` (method, config, dimension, weights checksum)
and ``weights.npz`` (plain arrays, no pickle). The checksum turns a truncated or edited weights file
into a clear "corrupt" error rather than silently wrong codes.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from data.artifacts import atomic_path, file_sha256
from data.configs import build_config
from data.errors import DataError

FORMAT_VERSION = 1


def check_embeddings(x: Any, dim: int | None = None, min_items: int = 1, what: str = "embeddings") -> np.ndarray:
    """A finite float32 (N, D) array, or a DataError that says what is wrong with it."""
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} are not a numeric array ({exc})") from None
    if arr.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (items, dims), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{what} have {arr.shape[1]} dimensions but the quantizer was fitted on {dim}")
    if len(arr) < min_items:
        raise DataError(f"{what}: {len(arr)} items, need at least {min_items}")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(f"{what} contain {int(bad.sum())} NaN/inf values in {len(rows)} rows "
                        f"(first: row {int(rows[0])}); re-embed the items")
    return np.ascontiguousarray(arr)


def check_codes(codes: Any, levels: int, codebook_size: int) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[1] != levels or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"codes must be an integer array of shape (items, {levels}), got {arr.dtype} {arr.shape}")
    if ((arr < 0) | (arr >= codebook_size)).any():
        raise DataError(f"codes must lie in [0, {codebook_size})")
    return arr.astype(np.int64)


class Quantizer(ABC):
    """Residual quantizer of item embeddings into ``levels`` codes from ``codebook_size`` each."""

    method: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.config_class()
        if self.config.levels < 1 or self.config.codebook_size < 2:
            raise ValueError(f"need levels >= 1 and codebook_size >= 2, got {self.config.levels} x "
                             f"{self.config.codebook_size}")
        self.dim: int | None = None

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def fitted(self) -> bool:
        return self.dim is not None

    def _check_fit_input(self, x: Any) -> np.ndarray:
        x = check_embeddings(x)
        if len(x) < self.codebook_size:
            raise DataError(f"{len(x)} items but the codebook has {self.codebook_size} codes per level: "
                            "use a smaller --codebook-size (at most the number of items)")
        return x

    def _require_fitted(self) -> int:
        if self.dim is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() or load() first")
        return self.dim

    @abstractmethod
    def fit(self, x: np.ndarray) -> Self:
        """Learn the codebooks from (N, D) embeddings."""

    @abstractmethod
    def encode(self, x: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, levels) int64 codes."""

    @abstractmethod
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(N, levels) codes -> (N, D) float32 reconstructions."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """The learned arrays, by name."""

    @abstractmethod
    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore from ``_state``'s arrays; raise ValueError/KeyError if they do not fit the config."""

    # -- files -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``quantizer.json`` + ``weights.npz`` into ``directory`` in one atomic rename."""
        self._require_fitted()
        directory = Path(directory)
        with atomic_path(directory) as tmp:
            tmp.mkdir(parents=True)
            with open(tmp / "weights.npz", "wb") as fh:
                np.savez(fh, **self._state())
            meta = {"format_version": FORMAT_VERSION, "method": self.method, "dim": self.dim,
                    "config": dataclasses.asdict(self.config), "weights_sha256": file_sha256(tmp / "weights.npz")}
            (tmp / "quantizer.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Quantizer:
        """Load a saved quantizer of any method (``RQKMeans.load`` on an RQ-VAE directory is an error)."""
        from tokenizer.registry import quantizer_class

        directory = Path(directory)
        meta_path, weights_path = directory / "quantizer.json", directory / "weights.npz"
        if not meta_path.is_file():
            raise DataError("not a saved quantizer (quantizer.json is missing)", directory)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            method, dim, raw_config = meta["method"], int(meta["dim"]), dict(meta["config"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"corrupt quantizer metadata ({type(exc).__name__}: {exc})", meta_path) from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported quantizer format {meta.get('format_version')!r} "
                            f"(this version reads {FORMAT_VERSION})", meta_path)
        klass = quantizer_class(method)
        if cls is not Quantizer and klass is not cls:
            raise DataError(f"{directory} holds a {method!r} quantizer, not {cls.method!r}", meta_path)
        if not weights_path.is_file():
            raise DataError("weights.npz is missing", directory)
        if file_sha256(weights_path) != meta.get("weights_sha256"):
            raise DataError("corrupt weights: checksum does not match quantizer.json (truncated or edited?)",
                            weights_path)
        try:
            config = build_config(klass.config_class, raw_config, "config")
            quantizer = klass(config)
            with np.load(weights_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            quantizer.dim = dim
            quantizer._set_state(arrays)
        except (ValueError, KeyError, TypeError, RuntimeError, OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"corrupt quantizer ({type(exc).__name__}: {exc})", directory) from None
        return quantizer
