"""Method name -> quantizer class, so files and the CLI can name a method by string."""

from __future__ import annotations

from typing import Any

from data.errors import DataError

METHODS = ("rq-kmeans", "rq-vae")


def quantizer_class(method: str) -> type:
    from tokenizer.rq_kmeans import RQKMeans
    from tokenizer.rq_vae import RQVAE

    classes = {"rq-kmeans": RQKMeans, "rq-vae": RQVAE}
    if method not in classes:
        raise DataError(f"unknown tokenizer method {method!r}; choose one of {', '.join(METHODS)}")
    return classes[method]


def make_quantizer(method: str, **config: Any):
    """A quantizer of ``method`` with its config's defaults overridden by ``config`` (validated: unknown
    options and wrong types are errors naming the option)."""
    from data.configs import build_config

    klass = quantizer_class(method)
    return klass(build_config(klass.config_class, config, method))
