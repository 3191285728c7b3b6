"""Reranker inference engines, shared by evaluation, RL rollouts, HiLight's solver and serving.

``vllm_engine``: the in-process vLLM server engine (``RerankEngine``) and its settings;
``hf_engine``: the same interface on ``transformers`` generate; ``permutation_constraint``: vLLM's
exact-permutation logits processor; ``vllm_batch``: offline batched vLLM decoding for evaluation;
``item_text``: the served tokenizer's markup stripped from item text (any model family).
Heavy imports (vLLM, torch) stay inside the functions that need them.
"""
