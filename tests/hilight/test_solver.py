"""Solvers: the cache sends each distinct prompt once; an OpenAI-compatible endpoint is asked greedily and its
answer parsed (here a loopback chat server that ranks the prompt's candidates in reverse)."""

from __future__ import annotations

import re
import threading

import pytest

from hilight.solver import OpenAISolver, solver_reward
from hilight.spans import render_messages

SID = re.compile(r"<\|sid_begin\|>.*?<\|sid_end\|>")


def test_cache_answers_each_prompt_once_and_keeps_the_order(tiny_solver, ml100k_catalog, hl_valid):
    conversations = [ml100k_catalog.messages(ex) for ex in hl_valid[:3]]
    sids = [ml100k_catalog.candidate_sids(ex) for ex in hl_valid[:3]]
    before = tiny_solver.calls
    first = tiny_solver.answer(conversations + conversations[:1], sids + sids[:1])
    assert tiny_solver.calls - before == 3 and first[0] is first[3]
    again = tiny_solver.answer(conversations[::-1], sids[::-1])
    assert tiny_solver.calls - before == 3 and [a.order for a in again] == [a.order for a in first[2::-1]]
    assert all(a.valid and sorted(a.order) == list(range(10)) for a in first)  # constrained as served


@pytest.fixture
def chat_server():
    """An OpenAI-compatible /v1/chat/completions on loopback; records what it was asked."""
    import uvicorn
    from fastapi import FastAPI

    from serving.load import free_port

    seen: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(body: dict) -> dict:
        seen.append(body)
        user = body["messages"][-1]["content"]
        if "unparseable" in user:
            content = "no idea"
        else:
            candidates = SID.findall(user.split("Candidates")[1])
            content = '<think>reverse</think>\n{"recommendations": [' + ", ".join(f'"{s}"' for s in candidates[::-1]) \
                + "]}"
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}/v1", seen
    server.should_exit = True
    thread.join(10)


def test_openai_solver_asks_greedily_and_parses(chat_server, ml100k_catalog, hl_valid):
    url, seen = chat_server
    solver = OpenAISolver(url, "any-chat-model", concurrency=4)
    examples = hl_valid[:5]
    conversations = [render_messages(ml100k_catalog, ex) for ex in examples]
    conversations[4] = [*conversations[4][:-1], {"role": "user", "content": "unparseable"}]
    answers = solver.answer(conversations, [ml100k_catalog.candidate_sids(ex) for ex in examples])
    solver.close()
    assert [a.order for a in answers[:4]] == [list(range(9, -1, -1))] * 4 and all(a.valid for a in answers[:4])
    assert answers[4].fallback and solver_reward(answers[4], examples[4].target_index) == 0.0
    assert len(seen) == 5 and all(b["temperature"] == 0.0 and b["model"] == "any-chat-model" for b in seen)
