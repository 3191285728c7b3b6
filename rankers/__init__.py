"""The classical ranking stack: retrieval (popularity, co-occurrence, faiss content ANN), a SASRec-style
sequential ranker with switchable fused attention kernels, full-ranking evaluation and candidate files.

It is the pre-ranker whose top-K the GR2 reranker reorders and the fallback when the LLM is slow.
Imports only ``data`` and ``evals.metrics``.
"""

from rankers.errors import ConfigError

__all__ = ["ConfigError"]
