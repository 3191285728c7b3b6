"""Closed-loop HTTP load on a running server, every answer checked.

``clients`` workers each send their next request as soon as the previous one is answered, until
``seconds`` have passed (requests in flight then are awaited and counted); a refused request (429 or
503 with ``Retry-After``) is counted apart and its client waits as told. Every 200 answer is
checked: a rerank answer must be a permutation of exactly its request's candidates (or its top_n
prefix), a recommend answer distinct candidate ids the user has not seen. Used by the test suite
(a few seconds, 8 clients), by ``gr2 bench load`` (the 64-client, 60-second must-show) and by
``gr2 bench serve`` (throughput and latency per concurrency).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Check = Callable[[dict], str | None]  # the problem with an answer, or None


@dataclass
class LoadRequest:
    path: str  # /v1/rerank or /v1/recommend
    body: dict
    check: Check


def check_rerank(body: dict) -> Check:
    ids = [c["id"] for c in body["candidates"]]
    expected = min(body.get("top_n") or len(ids), len(ids))

    def check(answer: dict) -> str | None:
        results = answer.get("results", [])
        indices = [r["index"] for r in results]
        if len(indices) != expected or len(set(indices)) != expected or not all(0 <= i < len(ids) for i in indices):
            return f"not a permutation of the {len(ids)} candidates: indices {indices}"
        if expected == len(ids) and sorted(indices) != list(range(len(ids))):
            return f"indices {indices} are not 0..{len(ids) - 1}"
        if any(r["id"] != ids[r["index"]] for r in results):
            return "an id does not match its index"
        return None

    return check


def check_recommend(body: dict, seen: set[str]) -> Check:
    def check(answer: dict) -> str | None:
        ids = [r["id"] for r in answer.get("results", [])]
        candidates = answer.get("candidates", [])
        if len(set(ids)) != len(ids):
            return f"duplicate recommendations {ids}"
        if len(ids) != min(body.get("top_n", 10), len(candidates)):
            return f"{len(ids)} results for top_n={body.get('top_n', 10)} and {len(candidates)} candidates"
        if not set(ids) <= set(candidates):
            return "a result that is not among the ranker's candidates"
        if set(ids) & seen:
            return "recommended an item the user has already seen"
        return None

    return check


def percentile_ms(latencies: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(latencies, q)) * 1e3, 1) if len(latencies) else None


REFUSALS = ("429", "503")  # load refusals: counted apart from errors, with their own latency


async def run_load(base_url: str, requests: Sequence[LoadRequest], clients: int, seconds: float,
                   timeout_s: float = 120.0, max_requests: int | None = None,
                   honor_retry_after: bool = True) -> dict:
    """Drive the server; returns counts, throughput and latency percentiles (see module docstring).

    A 429 or 503 is a refusal, not an error: counted (``refused``) with its own latency percentiles, and
    the client waits its ``Retry-After`` (within the run's time) before the next request, as a well-behaved
    client does. ``errors`` counts everything else that is not a 200; ``server_errors`` every 5xx, 503s
    included."""
    import httpx

    if not requests:
        raise ValueError("no requests to send")
    stats = {"sent": 0, "ok": 0, "errors": 0, "invalid": 0, "fallback": 0, "repaired": 0, "refused": 0,
             "server_errors": 0}
    status: Counter[str] = Counter()
    latencies: list[float] = []
    refusal_latencies: list[float] = []
    retry_after: list[float] = []
    completion_tokens: list[int] = []
    prompt_tokens: list[int] = []
    problems: list[str] = []
    counter = iter(range(10**12))
    start = time.perf_counter()
    deadline = start + seconds
    last_done = start

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal last_done
        while time.perf_counter() < deadline:
            n = next(counter)
            if max_requests is not None and n >= max_requests:
                return
            req = requests[n % len(requests)]
            stats["sent"] += 1
            t0 = time.perf_counter()
            try:
                r = await http.post(req.path, json=req.body)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
                stats["errors"] += 1
                status[type(exc).__name__] += 1
                if len(problems) < 10:
                    problems.append(f"{req.path}: {type(exc).__name__}: {exc}")
                continue
            last_done = time.perf_counter()
            status[str(r.status_code)] += 1
            stats["server_errors"] += r.status_code >= 500
            if str(r.status_code) in REFUSALS:
                stats["refused"] += 1
                refusal_latencies.append(last_done - t0)
                wait = _retry_after(r.headers.get("retry-after"))
                if wait is None:
                    stats["errors"] += 1  # a refusal must say when to come back
                    if len(problems) < 10:
                        problems.append(f"{req.path}: HTTP {r.status_code} without Retry-After")
                    continue
                retry_after.append(wait)
                if honor_retry_after:
                    await asyncio.sleep(max(0.0, min(wait, deadline - time.perf_counter())))
                continue
            if r.status_code != 200:
                stats["errors"] += 1
                if len(problems) < 10:
                    problems.append(f"{req.path}: HTTP {r.status_code}: {r.text[:200]}")
                continue
            latencies.append(last_done - t0)
            answer = r.json()
            problem = req.check(answer)
            if problem:
                stats["invalid"] += 1
                if len(problems) < 10:
                    problems.append(f"{req.path}: {problem}")
                continue
            stats["ok"] += 1
            stats["fallback"] += bool(answer.get("fallback"))
            stats["repaired"] += bool(answer.get("repaired"))
            completion_tokens.append(answer.get("usage", {}).get("completion_tokens", 0))
            prompt_tokens.append(answer.get("usage", {}).get("prompt_tokens", 0))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    elapsed = max(last_done - start, 1e-9)
    return {
        **stats, "clients": clients, "seconds": round(elapsed, 2), "status": dict(status),
        "requests_per_second": round(stats["ok"] / elapsed, 3),
        "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
        "refused_p50_ms": percentile_ms(refusal_latencies, 50), "refused_p99_ms": percentile_ms(refusal_latencies, 99),
        "refused_max_ms": round(max(refusal_latencies) * 1e3, 1) if refusal_latencies else None,
        "mean_retry_after_s": round(float(np.mean(retry_after)), 2) if retry_after else None,
        "mean_completion_tokens": round(float(np.mean(completion_tokens)), 1) if completion_tokens else None,
        "mean_prompt_tokens": round(float(np.mean(prompt_tokens)), 1) if prompt_tokens else None,
        "problems": problems,
    }


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta-seconds form the server sends), None when absent or unreadable."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# -- requests from a dataset ---------------------------------------------------------------------
def rerank_requests(ds, catalog, n: int = 200, k: int = 10, max_history: int = 10, seed: int = 0,  # noqa: ANN001
                    candidates=None) -> list[LoadRequest]:  # noqa: ANN001
    """Rerank bodies from the test split: the user's last ``max_history`` items and ``k`` candidates.

    Candidates are the run's pre-ranker lists (``candidates``: a ``load_candidates`` frame) when
    given, else the target plus random unseen items, in a random order (seeded).
    """
    rng = np.random.default_rng(seed)
    out = []
    if candidates is not None:
        rows = candidates.sample(min(n, len(candidates)), random_state=seed)
        pairs = [(ds.sequences[int(r.user)][: int(r.history_len)], [int(c) for c in r.candidates][:k])
                 for r in rows.itertuples(index=False)]
    else:
        test = ds.eval_examples("test")
        pairs = []
        for i in rng.choice(len(test), size=min(n, len(test)), replace=False):
            hist, target = test.histories[i], int(test.targets[i])
            pool = np.setdiff1d(np.arange(ds.num_items), np.append(hist, target))
            cands = [target, *rng.choice(pool, size=k - 1, replace=False).tolist()]
            pairs.append((hist, [cands[j] for j in rng.permutation(k)]))
    for hist, cands in pairs:
        body = {"history": [{"id": catalog.item_ids[i]} for i in hist[-max_history:]],
                "candidates": [{"id": catalog.item_ids[i]} for i in cands]}
        out.append(LoadRequest("/v1/rerank", body, check_rerank(body)))
    return out


def recommend_requests(ds, catalog, n: int = 100, top_n: int = 5, seed: int = 0) -> list[LoadRequest]:  # noqa: ANN001
    """Recommend bodies for known users (their whole history is theirs to exclude)."""
    rng = np.random.default_rng(seed)
    out = []
    for u in rng.choice(ds.num_users, size=min(n, ds.num_users), replace=False):
        body = {"user_id": ds.user_ids[u], "top_n": top_n}
        seen = {catalog.item_ids[i] for i in ds.sequences[u]}
        out.append(LoadRequest("/v1/recommend", body, check_recommend(body, seen)))
    return out


def mix(*groups: Sequence[LoadRequest], seed: int = 0) -> list[LoadRequest]:
    requests = [r for g in groups for r in g]
    return [requests[i] for i in np.random.default_rng(seed).permutation(len(requests))]


# -- a server process --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``gr2 serve`` in a child process on loopback, as a user starts it; stopped with Ctrl-C (SIGINT)."""

    def __init__(self, args: Sequence[str], log_path: str | Path, start_timeout_s: float = 600.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "gr2.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path = Path(log_path)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.time() + self.start_timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                self.health()
                return self
            except OSError:
                time.sleep(1)
        self.__exit__()
        raise RuntimeError(f"server not healthy after {self.start_timeout_s:.0f} s: {self.log_tail()}")

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
            return json.loads(r.read())

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.is_file() else ""

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
