"""The GR2-style tokenizer ablation: RQ-KMeans; RQ-VAE without EMA; with EMA; with EMA + random last level.

Each row reports uniqueness before/after de-dup, per-level utilisation and a semantic check (mean
cosine of items sharing a first-level code vs of random pairs). The random last level changes only
how the last code is assigned, so the last two rows share one trained RQ-VAE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from data.artifacts import atomic_path, write_json_atomic, write_manifest, write_text_atomic
from tokenizer.base import check_embeddings
from tokenizer.fit import default_shape, measure_codes
from tokenizer.registry import make_quantizer

ROWS = ("RQ-KMeans", "RQ-VAE, no EMA", "RQ-VAE + EMA", "RQ-VAE + EMA + random last level")
# Dead-code restart keeps every code in use in both RQ-VAE variants; these rows show what EMA does alone.
NO_RESTART_ROWS = ("RQ-VAE, no EMA, no dead-code restart", "RQ-VAE + EMA, no dead-code restart")


def run_ablation(x: np.ndarray, levels: int | None = None, codebook_size: int | None = None, seed: int = 0,
                 show_progress: bool = True, no_restart_rows: bool = True, **rqvae_config: Any) -> list[dict[str, Any]]:
    """Fit the three models (four rows) on ``x``, plus two without dead-code restart if ``no_restart_rows``;
    ``rqvae_config`` overrides RQ-VAE options (epochs, ...)."""
    x = check_embeddings(x)
    d_levels, d_k = default_shape(len(x))
    shape = {"levels": levels or d_levels, "codebook_size": codebook_size or d_k, "seed": seed}
    rows = []

    def timed_fit(method: str, **config: Any):
        q = make_quantizer(method, **shape, **config)
        start = time.perf_counter()
        q.fit(x)
        return q, time.perf_counter() - start

    km, seconds = timed_fit("rq-kmeans")
    rows.append({"name": ROWS[0], **measure_codes(x, km, km.encode(x)), "fit_seconds": seconds})
    vae_opts = {"show_progress": show_progress, **rqvae_config}
    plain, seconds = timed_fit("rq-vae", **{**vae_opts, "ema": False, "random_last_level": False})
    rows.append({"name": ROWS[1], **measure_codes(x, plain, plain.encode(x)), "fit_seconds": seconds})
    ema, seconds = timed_fit("rq-vae", **{**vae_opts, "ema": True, "random_last_level": True})
    rows.append({"name": ROWS[2], **measure_codes(x, ema, ema.encode(x, random_last=False)), "fit_seconds": seconds})
    rows.append({"name": ROWS[3], **measure_codes(x, ema, ema.encode(x, random_last=True)), "fit_seconds": seconds})
    if no_restart_rows:
        for name, use_ema in zip(NO_RESTART_ROWS, (False, True), strict=True):
            q, seconds = timed_fit("rq-vae", **{**vae_opts, "ema": use_ema, "random_last_level": False,
                                                "restart_dead_codes": False})
            rows.append({"name": name, **measure_codes(x, q, q.encode(x)), "fit_seconds": seconds})
    return rows


def ablation_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    head = ("| tokenizer | unique before de-dup | unique after | largest collision | utilisation per level "
            "| same-first-code cos | random-pair cos | recon cos | fit s |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['name']} | {r['uniqueness_before_dedup']:.2%} | {r['uniqueness']:.0%} | {r['largest_collision_group']} "
        f"| {' / '.join(f'{u:.2f}' for u in r['utilization'])} | {r['same_first_code_cosine']:.3f} "
        f"| {r['random_pair_cosine']:.3f} | {r['reconstruction_cosine']:.3f} | {r['fit_seconds']:.1f} |\n"
        for r in rows)
    return (f"### {title}\n\n" if title else "") + head + body


def ablation_to_dir(dataset: str, out_dir: str | Path, seed: int = 0, show_progress: bool = True,
                    **config: Any) -> list[dict[str, Any]]:
    """``gr2 tokenizer ablation``: run on a dataset's embeddings; write ablation.json/.md + manifest."""
    from data.embeddings import embed_items

    emb = embed_items(dataset, show_progress=show_progress)
    rows = run_ablation(emb.vectors, seed=seed, show_progress=show_progress, **config)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_json_atomic(tmp / "ablation.json", {"dataset": dataset, "rows": rows})
        write_text_atomic(tmp / "ablation.md", ablation_markdown(rows, f"Tokenizer ablation on {dataset}"))
        write_manifest(tmp, kind="tokenizer/ablation", config={"dataset": dataset, **config}, seed=seed,
                       inputs=[emb.path], metrics={r["name"]: r["uniqueness_before_dedup"] for r in rows})
    return rows
