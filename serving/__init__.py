"""Serving GR2 rerankers: vLLM engine wrapper, HTTP API, cascade, guardrails, demo."""
