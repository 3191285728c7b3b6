"""Schemathesis fuzzing of the OpenAPI schema against the real engine: no body ever gets a 5xx.

Cases come from the app's own ``/openapi.json``, in positive (schema-valid) and negative
(schema-violating) modes; they are sent through the session's test client, because the vLLM
engine lives on that client's event loop. Valid random bodies mostly name unknown items (a 422),
so a second strategy builds schema-valid bodies from real catalogue ids to reach the engine.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.conftest import HOSTILE

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def api(client):
    return schemathesis.openapi.from_dict(client.get("/openapi.json").json())


def send(client, case):
    """The case serialised as schemathesis would send it (JSON, or raw bytes for a wrong media type)."""
    kw = case.as_transport_kwargs(base_url=str(client.base_url))
    body = {"json": kw["json"]} if "json" in kw else {"content": kw["data"]} if "data" in kw else {}
    return client.request(kw["method"], kw["url"], headers=kw.get("headers"), params=kw.get("params"), **body)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/v1/rerank", "/v1/recommend"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_bodies_never_get_5xx(api, client, path, mode):
    extra = [negative_data_rejection] if mode == GenerationMode.NEGATIVE else []

    @FUZZ
    @given(case=api[path]["POST"].as_strategy(generation_mode=mode))
    def run(case):
        response = send(client, case)
        assert response.status_code < 500, response.text
        # a body over the size cap is refused whole with 413, a rejection schemathesis does not count as one
        refused = response.status_code == 413 and "request body over" in response.text
        case.validate_response(response, checks=CHECKS + ([] if refused else extra))

    run()


def test_the_schema_lists_every_endpoint(api):
    assert {"/v1/rerank", "/v1/recommend", "/healthz", "/metrics"} <= set(api.raw_schema["paths"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_recommend_histories_with_hostile_titles(client, ml100k_catalog, data):
    """Any valid explicit history (titles included, hostile or not) gets distinct unseen candidates."""
    n = len(ml100k_catalog.item_ids)
    hist = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=20, unique=True))
    titles = data.draw(st.lists(st.one_of(st.none(), st.sampled_from(HOSTILE), st.text(max_size=60)),
                                min_size=len(hist), max_size=len(hist)))
    top_n = data.draw(st.integers(1, 10))
    history = [{"id": ml100k_catalog.item_ids[i], **({"title": t} if t is not None else {})}
               for i, t in zip(hist, titles, strict=True)]
    r = client.post("/v1/recommend", json={"history": history, "top_n": top_n})
    assert r.status_code == 200, r.text
    out = r.json()
    ids = [x["id"] for x in out["results"]]
    assert len(ids) == len(set(ids)) == min(top_n, len(out["candidates"]))
    assert set(ids) <= set(out["candidates"]) and not set(ids) & {h["id"] for h in history}
