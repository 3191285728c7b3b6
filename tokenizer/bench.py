"""``gr2 bench tokenizer``: fit time of each quantizer on one dataset, pinned to a fixed number of cores."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data.artifacts import gr2_home, write_json_atomic
from tokenizer.fit import fit_codes
from tokenizer.registry import quantizer_class

# (label, method, options): what the bench compares.
VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("rq-kmeans", "rq-kmeans", {}),
    ("rq-kmeans balanced", "rq-kmeans", {"balanced": True}),
    ("rq-vae (EMA + random last)", "rq-vae", {}),
)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Limit torch and faiss (OpenMP) to ``threads`` for the block."""
    import faiss
    import torch

    old_torch, old_omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        faiss.omp_set_num_threads(old_omp)


def bench_tokenizer(dataset: str, threads: int = 2, out: str | Path | None = None, show_progress: bool = True,
                    variants: tuple[tuple[str, str, dict[str, Any]], ...] = VARIANTS, **overrides: Any) -> dict:
    """Fit every variant on ``dataset``'s embeddings; returns and writes ``{"results": [...], ...}`` as JSON.

    ``overrides`` (e.g. ``epochs=50``) apply to the variants whose config has that option.
    """
    from data.embeddings import embed_items

    emb = embed_items(dataset, show_progress=show_progress)
    results = []
    load_before = os.getloadavg()[0]  # other work on the machine inflates the times: record it
    with pinned_threads(threads):
        for label, method, options in variants:
            fields = {f.name for f in dataclasses.fields(quantizer_class(method).config_class)}
            opts = {**options, **{k: v for k, v in overrides.items() if k in fields}}
            if method == "rq-vae":
                opts.setdefault("show_progress", show_progress)
            start = time.perf_counter()
            outcome = fit_codes(emb.vectors, method, **opts)
            r = outcome.report
            results.append({"variant": label, "method": method, "fit_seconds": r["fit_seconds"],
                            "total_seconds": time.perf_counter() - start,
                            "uniqueness_before_dedup": r["uniqueness_before_dedup"],
                            "utilization": r["utilization"], "levels": r["levels"],
                            "codebook_size": r["codebook_size"], "config": r["config"]})
    report = {"dataset": dataset, "items": int(emb.vectors.shape[0]), "threads": threads, "cpu_count": os.cpu_count(),
              "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}, "results": results}
    out = Path(out) if out else gr2_home() / "bench" / f"tokenizer-{dataset}.json"
    write_json_atomic(out, report)
    report["path"] = str(out)
    return report
