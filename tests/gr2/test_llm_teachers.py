"""LLM teachers against real backends: a local `vllm serve` of a tiny model, and the model in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from gr2.teachers import HFTeacher, LLMTeacherConfig, OpenAITeacher
from gr2.teachers.base import targeted_messages
from gr2.traces import TraceConfig, generate_traces


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_endpoint(tiny_sid_model, tmp_path_factory):
    """`vllm serve` on loopback; stopped when the module's tests end."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("vllm") / "server.log", "w")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_sid_model),
           "--served-model-name", "tiny-teacher", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--max-model-len", "2048", "--gpu-memory-utilization", "0.1"]
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}; see {log.name}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail("vllm serve did not become healthy in 300 s")
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_targeted_note_names_the_truth(ml100k_catalog, ml100k_examples):
    ex = next(e for e in ml100k_examples if e.target_index is not None)
    messages = ml100k_catalog.messages(ex)
    noted = targeted_messages(messages, ml100k_catalog.prompt_items([ex.target])[0])
    assert noted[:-1] == messages[:-1] and ml100k_catalog.sids.sid(ex.target) in noted[-1]["content"]
    assert ml100k_catalog.sids.sid(ex.target) not in messages[-1]["content"].split("Candidates")[0]


@pytest.mark.slow
def test_openai_teacher_against_vllm_serve(vllm_endpoint, ml100k_catalog, ml100k_examples):
    teacher = OpenAITeacher(ml100k_catalog, vllm_endpoint, "tiny-teacher", config=LLMTeacherConfig(max_tokens=32))
    ex = ml100k_examples[1]
    reply = teacher.reply(ex, ml100k_catalog.messages(ex), reveal_target=True, rng=np.random.default_rng(0))
    assert isinstance(reply.text, str) and reply.text
    assert reply.provenance["model"] == "tiny-teacher" and reply.provenance["heuristic"] is False
    assert reply.provenance["finish_reason"] in ("length", "stop")
    # an untrained teacher is never right: rejection sampling spends every allowed call and accepts nothing
    records, summary = generate_traces(ml100k_examples[:6], ml100k_catalog, teacher,
                                       TraceConfig(mode="rejection", max_samples=2))
    assert summary["teacher_calls"] == 2 * summary["attempted"] and summary["accepted"] == len(records) == 0


@pytest.mark.slow
def test_hf_teacher_samples(tiny_sid_model, ml100k_catalog, ml100k_examples):
    teacher = HFTeacher(ml100k_catalog, tiny_sid_model, LLMTeacherConfig(max_tokens=24, temperature=1.0))
    ex = ml100k_examples[1]
    texts = {teacher.reply(ex, ml100k_catalog.messages(ex), False, np.random.default_rng(s)).text for s in range(3)}
    assert len(texts) > 1  # sampled, not greedy
