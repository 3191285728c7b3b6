"""The demo's handlers against the real HTTP app on loopback (the session's vLLM engine): what the page
would show for a rerank, a cascade, a model switch and the errors a person can cause. The browser
drives the same handlers in ``test_demo_browser.py``."""

from __future__ import annotations

import json
import re

import pytest

from serving.demo import (
    ApiClient,
    ApiError,
    DemoHandlers,
    RunView,
    emphasised_positions,
    moves,
    parse_positions,
    render_history,
    render_lists,
    render_reports,
    span_texts,
)
from tests.serving.conftest import LORA_NAME, TRAINED_HISTORY, loopback


def listed(fragment: str, testid: str) -> list[dict[str, str]]:
    """The ``data-*`` attributes of each item of the list ``data-testid=testid`` in rendered HTML."""
    block = re.search(rf"data-testid='{testid}'>(.*?)</ol>", fragment, re.S).group(1)
    return [dict(re.findall(r"data-([a-z]+)='([^']*)'", li)) for li in re.findall(r"<li [^>]*>", block)]


@pytest.fixture(scope="module")
def api_url(client, app):
    with loopback(client, app) as url:
        yield url


@pytest.fixture(scope="module")
def handlers(api_url):
    return DemoHandlers(ApiClient(api_url))


def test_rerank_shows_a_permutation_with_the_moves_of_the_response(handlers, ml100k_catalog):
    ids = ml100k_catalog.item_ids
    history, candidates = ids[:TRAINED_HISTORY], ids[20:30]
    out = handlers.rerank(None, False, ", ".join(history), " ".join(candidates), "1, 3", candidates[4])
    history_html, lists_html, meta, _, response_json, error = out
    assert error == ""
    answer = json.loads(response_json)
    shown = listed(lists_html, "reranked-list")
    assert sorted(s["id"] for s in shown) == sorted(candidates)  # a permutation of the candidates
    assert [s["id"] for s in shown] == [r["id"] for r in answer["results"]]
    for rank, (s, r) in enumerate(zip(shown, answer["results"], strict=True), 1):
        assert int(s["pre"]) == r["index"] + 1 and int(s["move"]) == r["index"] + 1 - rank
    assert [s["id"] for s in listed(lists_html, "prerank-list")] == candidates
    assert lists_html.count("next item</span>") == 2  # the held-out item, marked in both lists
    emphasised = re.findall(r"data-pos='(\d+)'[^>]*><mark", history_html)
    assert emphasised == ["1", "3"] and "requested" in history_html
    assert "latency" in meta and "repaired" in meta and "fallback" in meta


def test_model_switch_lists_the_base_model_and_its_lora_adapters(handlers, ml100k_catalog):
    choices, status, hilight, _ = handlers.check_server(None)
    assert choices["choices"] == ["tiny-test", LORA_NAME]
    assert choices["value"] == "tiny-test" and "server ok" in status
    assert hilight["interactive"] is False  # no HiLight actor behind this server
    ids = ml100k_catalog.item_ids
    out = handlers.rerank(LORA_NAME, False, ids[0], ", ".join(ids[10:20]), "", None)
    assert out[-1] == "" and json.loads(out[4])["model"] == LORA_NAME


def test_cascade_shows_retrieved_ranked_and_reranked(handlers, ml100k):
    funnel_html, meta, _, error = handlers.recommend(None, ml100k.user_ids[0], "", None, None)
    assert error == "" and "retrieved" in funnel_html and "ranker score" in funnel_html
    pre, post = listed(funnel_html, "prerank-list"), listed(funnel_html, "reranked-list")
    assert len(pre) == 10 and sorted(p["id"] for p in post) == sorted(p["id"] for p in pre)
    position = {p["id"]: int(p["pos"]) for p in pre}
    assert all(int(p["pre"]) == position[p["id"]] for p in post)


@pytest.mark.parametrize(("args", "says"), [
    ((None, False, "1", "1, no-such-item", "", None), "unknown item id 'no-such-item'"),
    ((None, False, "1", "", "", None), "give at least one candidate"),
    ((None, False, "1, 2", "3, 4", "7", None), "'7' is not a history position (1..2)"),
    (("no-such-model", False, "1", "3, 4", "", None), "(404)"),
])
def test_a_bad_request_is_a_message_not_a_traceback(handlers, args, says):
    out = handlers.rerank(*args)
    assert says in out[-1] and "Traceback" not in out[-1] and "gr2-error" in out[-1]


def test_hilight_is_sent_and_refused_by_a_server_without_an_actor(handlers):
    out = handlers.rerank(None, True, "1", "3, 4", "", None)
    assert "gr2-error" in out[-1] and "emphasis" in out[-1]


def test_a_server_that_is_down_is_a_message():
    from serving.load import free_port

    down = DemoHandlers(ApiClient(f"http://127.0.0.1:{free_port()}", timeout_s=5))
    assert "cannot reach the rerank server" in down.rerank(None, False, "1", "2, 3", "", None)[-1]
    _, status, _, poll = down.check_server(None)
    assert "cannot reach" in status and poll.active  # the page keeps polling until the server is up


def test_emphasis_comes_from_hilight_spans_when_the_response_has_them():
    assert emphasised_positions({"results": []}, [2]) == ([2], "requested")
    assert emphasised_positions({"emphasis_spans": [4, {"position": 1}]}, []) == ([1, 4], "HiLight")
    assert emphasised_positions({"emphasis": {"spans": [{"start": 0, "end": 2}]}}, [5]) == ([0, 1], "HiLight")
    with pytest.raises(ApiError):
        parse_positions("0", 3)


def test_moves_and_titles_are_escaped():
    answer = {"model": "m", "results": [{"index": 1, "id": "b"}, {"index": 0, "id": "a"}]}
    assert [(m["id"], m["move"]) for m in moves(answer)] == [("b", 1), ("a", -1)]
    page = render_lists(["a", "b"], answer, {"a": "<script>x</script>", "b": "B"})
    assert "<script>" not in page and "&lt;script&gt;" in page and "&uarr;1" in page and "&darr;1" in page


def test_evaluation_tables_and_plots_come_from_the_run_directory(tmp_path):
    from evals.report import write_report

    write_report(tmp_path / "eval", "rerank-test", "Rerank on ml-100k (test)",
                 [{"system": "pre-rank", "NDCG@5": 0.4281, "users": 188}, {"system": "SFT", "NDCG@5": 0.3962}],
                 ["NDCG@5"])
    write_report(tmp_path / "hilight" / "eval", "eval-test", "HiLight on ml-100k (test)",
                 [{"system": "none", "NDCG@5": 0.41}, {"system": "HiLight", "NDCG@5": 0.4321}], ["NDCG@5"])
    (tmp_path / "rl-conditional").mkdir()
    (tmp_path / "rl-conditional" / "curve-reward.png").write_bytes(b"png")
    view = RunView(tmp_path)
    assert [caption for _, caption in view.plots()] == ["eval/rerank-test.png", "rl-conditional/curve-reward.png",
                                                        "hilight/eval/eval-test.png"]
    assert [r["name"] for r in view.reports()] == ["eval/rerank-test", "hilight/eval/eval-test"]
    tables, plots = DemoHandlers(ApiClient("http://127.0.0.1:9"), view).evaluation()
    assert "Rerank on ml-100k (test)" in tables and "0.4281" in tables and "0.3962" in tables
    assert "HiLight on ml-100k (test)" in tables and "0.4321" in tables and "hilight/eval/eval-test.json" in tables
    assert plots.count("<img") == 3 and "data:image/png;base64," in plots and "rl-conditional/curve-reward.png" in plots
    assert "no evaluation reports" in render_reports([])


def test_hilight_spans_inside_a_title_mark_only_that_part():
    answer = {"emphasis_spans": [
        {"history_index": 0, "id": "a", "start": 30, "end": 36, "text": "Matrix"},
        {"history_index": 1, "id": "b", "start": 0, "end": 40, "text": "<|sid_begin|><s_a_1><|sid_end|> Heat (1995)"}]}
    positions, source = emphasised_positions(answer, [])
    page = render_history(["a", "b", "c"], {"a": "The Matrix (1999)", "b": "Heat (1995)", "c": "Up"}, positions,
                          source, texts=span_texts(answer))
    assert positions == [0, 1] and source == "HiLight"
    assert "The <mark class='gr2-emph' title='emphasised (HiLight)'>Matrix</mark> (1999)" in page
    assert "<mark class='gr2-emph' title='emphasised (HiLight)'>Heat (1995)" in page  # the whole item line
    assert page.count("<mark") == 2
