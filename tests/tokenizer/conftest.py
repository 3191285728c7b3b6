"""Tokenizer fixtures: small fast quantizer configs on real ML-100K embeddings."""

from __future__ import annotations

import pytest

# Small enough to train in a few seconds on 2 shared cores, large enough to learn something.
TINY_VAE = {"levels": 3, "codebook_size": 32, "hidden_dims": (64,), "latent_dim": 16, "epochs": 8,
            "batch_size": 512, "show_progress": False}


@pytest.fixture(scope="session")
def tiny_vae_config() -> dict:
    return dict(TINY_VAE)


@pytest.fixture(scope="session")
def ml100k_kmeans_dir(ml100k, ml100k_embeddings, tmp_path_factory):
    """``fit_dataset`` on ML-100K with RQ-KMeans (its default 3 x 64 shape), once per session."""
    from tokenizer import fit_dataset

    out = tmp_path_factory.mktemp("sid") / "ml100k-rq-kmeans"
    fit_dataset(ml100k, "rq-kmeans", out, embeddings=ml100k_embeddings, show_progress=False)
    return out
