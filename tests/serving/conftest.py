"""One real vLLM engine on a tiny GR2-format model, behind the HTTP app, for all serving tests.

vLLM's AsyncLLM binds its output loop to the event loop that first uses it, so engine-level tests
run their coroutines in the test client's own loop (``engine_run``) instead of a loop of their own;
one engine start-up (about a minute on 2 cores) serves the whole session.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def served(tiny_sid_model, ml100k_catalog):
    from serving.app import ServeLimits, create_app
    from serving.engine import EngineSettings, RerankEngine

    engine = RerankEngine(EngineSettings(str(tiny_sid_model), max_model_len=2048, max_new_tokens=160,
                                         max_reasoning_chars=100, timeout_s=60))
    app = create_app(engine, ml100k_catalog, "tiny-test", ServeLimits(max_candidates=20, max_history=20,
                                                                       max_body_bytes=64 * 1024))
    with TestClient(app) as client:  # the lifespan starts the engine in the client's event loop
        yield client, engine


@pytest.fixture(scope="session")
def client(served):
    return served[0]


@pytest.fixture(scope="session")
def rerank_engine(served):
    return served[1]


@pytest.fixture(scope="session")
def engine_run(served):
    """Run a coroutine on the engine's event loop: ``engine_run(engine.rerank, history, candidates)``."""
    client = served[0]
    return lambda fn, *args, **kwargs: client.portal.call(lambda: fn(*args, **kwargs))
