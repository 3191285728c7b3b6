"""Fit a semantic-ID tokenizer on a dataset's item embeddings and write it as a run directory.

``DIR/`` holds ``quantizer/`` (the model), ``codes.npy`` + ``sid_vocab.json`` + ``sids.tsv`` (the
catalogue's final IDs, de-dup level included), ``report.json`` and ``manifest.json``; the whole
directory appears in one atomic rename.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.artifacts import atomic_path, write_json_atomic, write_manifest
from data.errors import DataError
from data.schema import PreparedDataset
from tokenizer.base import Quantizer, check_embeddings
from tokenizer.dedup import add_dedup_level
from tokenizer.metrics import collision_stats, first_level_cohesion, uniqueness, utilization
from tokenizer.registry import make_quantizer
from tokenizer.sid import SemanticIDs

# What every report.json has (the CLI's table and later stages rely on these).
REPORT_KEYS = frozenset({
    "method", "items", "levels", "codebook_size", "dedup_level", "dedup_size", "uniqueness_before_dedup",
    "uniqueness", "largest_collision_group", "utilization", "prefix_uniqueness", "same_first_code_cosine",
    "random_pair_cosine", "reconstruction_cosine", "fit_seconds",
})


def default_shape(num_items: int) -> tuple[int, int]:
    """(levels, codebook_size) for a catalogue: 3 levels of K codes, K a power of two.

    K is the smallest power of two with K^2 >= 2 * num_items, clipped to [16, 256]: the first two
    levels alone then have about twice as many prefixes as items, so the third level and the
    de-dup level only resolve the remainder, while each code token is still shared by enough items
    (N / K at level a) for an LLM to learn it. 10k+ items -> 3 x 256 (TIGER / GR2's shape, 768 new
    tokens); MovieLens-100K (1,682 items) -> 3 x 64.
    """
    k = 16
    while k * k < 2 * num_items and k < 256:
        k *= 2
    return 3, k


@dataclass
class FitOutcome:
    quantizer: Quantizer
    codes_before_dedup: np.ndarray
    semantic_ids: SemanticIDs
    report: dict[str, Any]


def fit_codes(x: np.ndarray, method: str, dedup: bool = True, item_ids: list[str] | None = None,
              **config: Any) -> FitOutcome:
    """Fit ``method`` on embeddings ``x``, encode them, add the de-dup level and measure the result."""
    x = check_embeddings(x)
    if "levels" not in config or "codebook_size" not in config:
        levels, k = default_shape(len(x))
        config.setdefault("levels", levels)
        config.setdefault("codebook_size", k)
    quantizer = make_quantizer(method, **config)
    start = time.perf_counter()
    quantizer.fit(x)
    fit_seconds = time.perf_counter() - start
    codes = quantizer.encode(x)
    final, dedup_size = add_dedup_level(codes) if dedup else (codes, 0)
    level_sizes = [quantizer.codebook_size] * quantizer.levels + ([dedup_size] if dedup else [])
    sem = SemanticIDs(final, level_sizes, item_ids) if uniqueness(final) == 1.0 else None
    report = {"method": method, **measure_codes(x, quantizer, codes, dedup), "fit_seconds": fit_seconds,
              "config": asdict(quantizer.config)}
    return FitOutcome(quantizer, codes, sem, report)


def measure_codes(x: np.ndarray, quantizer: Quantizer, codes: np.ndarray, dedup: bool = True) -> dict[str, Any]:
    """Uniqueness (with and without de-dup), collisions, utilisation, cohesion and reconstruction of ``codes``."""
    final, dedup_size = add_dedup_level(codes) if dedup else (codes, 0)
    recon = quantizer.decode(codes)
    cos = (recon * x).sum(1) / np.maximum(np.linalg.norm(recon, axis=1) * np.linalg.norm(x, axis=1), 1e-12)
    return {
        "items": len(x),
        "dim": int(x.shape[1]),
        "levels": quantizer.levels,
        "codebook_size": quantizer.codebook_size,
        "dedup_level": dedup,
        "dedup_size": dedup_size,
        # Identical embeddings (e.g. identical titles) cap what any deterministic quantizer can reach.
        "distinct_embeddings": uniqueness(x),
        "uniqueness_before_dedup": uniqueness(codes),
        "uniqueness": uniqueness(final),
        **collision_stats(codes),
        "utilization": utilization(codes, quantizer.codebook_size),
        "prefix_uniqueness": [uniqueness(codes[:, : lv + 1]) for lv in range(quantizer.levels)],
        **first_level_cohesion(x, codes),
        "reconstruction_cosine": float(cos.mean()),
    }


def fit_dataset(dataset: str | PreparedDataset, method: str, out_dir: str | Path,
                embeddings: np.ndarray | None = None, show_progress: bool = True, **config: Any) -> FitOutcome:
    """``gr2 tokenizer fit``: embeddings of the dataset (cached) -> quantizer -> ``out_dir``."""
    from data.embeddings import embed_items
    from data.prepare import load_prepared

    ds = load_prepared(dataset) if isinstance(dataset, str) else dataset
    inputs: list[Path] = []
    if embeddings is None:
        emb = embed_items(ds, show_progress=show_progress)
        embeddings, inputs = emb.vectors, [emb.path]
    embeddings = check_embeddings(embeddings)
    if len(embeddings) != ds.num_items:
        raise DataError(f"{len(embeddings)} embeddings for {ds.num_items} items of {ds.name!r}", ds.path)
    if method == "rq-vae":
        config.setdefault("show_progress", show_progress)
    outcome = fit_codes(embeddings, method, item_ids=ds.items["item_id"].astype(str).tolist(), **config)
    outcome.report["dataset"] = ds.name
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        outcome.quantizer.save(tmp / "quantizer")
        outcome.semantic_ids.save(tmp)
        write_json_atomic(tmp / "report.json", outcome.report)
        write_manifest(tmp, kind=f"tokenizer/{method}", config={"dataset": ds.name, **outcome.report["config"]},
                       seed=outcome.report["config"].get("seed"), inputs=inputs,
                       metrics={k: v for k, v in outcome.report.items() if k not in ("config",)})
    return outcome


def load_report(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "report.json"
    if not path.is_file():
        raise DataError("no report.json here; run `gr2 tokenizer fit` first", Path(directory))
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"corrupt report ({exc})", path) from None
    missing = sorted(REPORT_KEYS - set(report)) if isinstance(report, dict) else sorted(REPORT_KEYS)
    if missing:
        raise DataError(f"corrupt report: missing {missing}", path)
    return report


def load_semantic_ids(directory: str | Path) -> SemanticIDs:
    """The catalogue's semantic IDs from a ``gr2 tokenizer fit`` output directory."""
    return SemanticIDs.load(directory)
