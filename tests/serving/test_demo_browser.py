"""The demo in a real browser: `gr2 demo` serving the session's quickstart run (API and page on loopback,
one process, as `make demo` leaves them), driven by Playwright through Debian's Chromium.

It loads the page, picks a test-split user by searching their id, runs a rerank, checks that the
reranked list is a permutation of the candidates and that every move shown matches the response JSON
the page shows, runs the cascade, opens the evaluation tab, and saves a screenshot of each tab
(the test's tmp dir; ``GR2_SCREENSHOTS=DIR`` copies them there too, e.g. ``docs/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("GR2_CHROMIUM", "/usr/bin/chromium"))
# Headless on a machine with no GPU, no display and no network: nothing phones home, nothing waits on it.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
START_TIMEOUT_S = 600  # the vLLM engine loads in about a minute on 2 idle cores; far longer on a busy machine
ANSWER_TIMEOUT_MS = 240_000

pytestmark = pytest.mark.slow


def wait_for(url: str, deadline: float, proc: subprocess.Popen, log: Path) -> None:
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"gr2 demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise AssertionError(f"{url} did not answer in time:\n{log.read_text()[-3000:]}")
        time.sleep(1)


@pytest.fixture(scope="module")
def demo_run(request, ml100k) -> Path:
    """The session's shrunk quickstart run, or the run ``GR2_DEMO_RUN`` names (e.g. a real quickstart's, for the
    README's screenshots: ``GR2_DEMO_RUN=~/.cache/gr2/runs/ml-100k-quickstart GR2_SCREENSHOTS=docs``)."""
    if os.environ.get("GR2_DEMO_RUN"):
        return Path(os.environ["GR2_DEMO_RUN"]).expanduser()
    return request.getfixturevalue("small_run")[0]


@pytest.fixture(scope="module")
def demo_urls(demo_run, tmp_path_factory):
    """`gr2 demo --run RUN` in a child process: (page URL, API URL); stopped with Ctrl-C (SIGINT)."""
    from serving.load import free_port

    run = demo_run
    api_port, page_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gr2.cli", "demo", "--run", str(run), "--port", str(page_port),
                                 "--api-port", str(api_port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        try:
            deadline = time.time() + START_TIMEOUT_S
            page, api = f"http://127.0.0.1:{page_port}", f"http://127.0.0.1:{api_port}"
            wait_for(f"{page}/", deadline, proc, log)
            wait_for(f"{api}/healthz", deadline, proc, log)
            yield page, api
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """Where the screenshots go; copied to $GR2_SCREENSHOTS afterwards when it is set."""
    out = tmp_path_factory.mktemp("screenshots")
    yield out
    if os.environ.get("GR2_SCREENSHOTS"):
        target = Path(os.environ["GR2_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy2(png, target / png.name)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/install_chromium.sh), or set "
                    "GR2_CHROMIUM to a Chromium binary")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def test_rerank_cascade_and_evaluation_in_the_browser(demo_urls, browser, demo_run, screenshots):
    from playwright.sync_api import expect

    from serving.demo import RunView

    page_url, _ = demo_urls
    run = demo_run
    view = RunView.load(run)
    # a user whose held-out next item is a candidate, not the dropdown's first: the search must work
    case = [c for c in view.users.values() if c.target_is_candidate][1]

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(60_000)
    page.goto(page_url)
    expect(page.locator("#server-status")).to_contain_text("server ok", timeout=ANSWER_TIMEOUT_MS)
    served = json.loads(urllib.request.urlopen(f"{demo_urls[1]}/healthz", timeout=10).read())["model"]
    expect(page.locator("#model input")).to_have_value(served)  # the model switch shows what /healthz serves

    # pick the user by typing their id into the dropdown's search and choosing the match
    search = page.locator("#user input")
    search.click()
    search.fill("")
    search.press_sequentially(case.user_id)  # typed key by key, as the dropdown filters on input events
    # the list re-renders after each key: wait until it shows exactly the labels that contain the id (Gradio
    # filters by substring and lists at most 100), or a click can land on an option of a half-filtered list
    matching = [label for label, _ in view.user_choices() if case.user_id.lower() in label.lower()]
    expect(page.get_by_role("option")).to_have_count(min(len(matching), 100))
    page.get_by_role("option", name=re.compile(rf"^{re.escape(case.user_id)} ")).first.click()
    expect(page.locator("#candidate-ids textarea")).to_have_value(", ".join(case.candidates))
    expect(page.locator("#history-ids textarea")).to_have_value(", ".join(case.history))
    expect(page.locator("[data-testid=prerank-list] li")).to_have_count(len(case.candidates))
    page.locator("#emphasis textarea").fill("1, 3")

    page.locator("#run-rerank").click()
    reranked = page.locator("[data-testid=reranked-list] li")
    expect(reranked).to_have_count(len(case.candidates), timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#rerank-message")).not_to_contain_text("refused")
    shown = reranked.evaluate_all(
        "items => items.map(li => ({id: li.dataset.id, pre: +li.dataset.pre, move: +li.dataset.move, "
        "text: li.innerText}))")
    assert sorted(s["id"] for s in shown) == sorted(case.candidates)  # a permutation of the candidates

    page.screenshot(path=str(screenshots / "demo-rerank.png"), full_page=True)
    page.get_by_text("Response JSON").click()
    answer = json.loads(page.locator("#response-json textarea").input_value())
    assert [s["id"] for s in shown] == [r["id"] for r in answer["results"]]
    for rank, (item, result) in enumerate(zip(shown, answer["results"], strict=True), 1):
        pre = result["index"] + 1
        assert item["pre"] == pre and item["move"] == pre - rank
        arrow = f"↑{pre - rank}" if pre > rank else f"↓{rank - pre}" if pre < rank else "="
        assert item["text"].startswith(f"{arrow} {pre}→{rank}"), item["text"]
        assert ("next item" in item["text"]) == (item["id"] == case.target)
    assert page.locator("[data-testid=history] mark").count() == 2  # the positions asked to be emphasised
    expect(page.locator("#rerank-meta")).to_contain_text("latency")
    expect(page.locator("#rerank-meta")).to_contain_text("fallback")

    page.get_by_role("tab", name="Cascade").click()
    page.locator("#run-cascade").click()
    expect(page.locator("[data-testid=cascade-funnel]")).to_contain_text("retrieved", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#cascade-view [data-testid=reranked-list] li")).to_have_count(10)
    page.screenshot(path=str(screenshots / "demo-cascade.png"), full_page=True)

    page.get_by_role("tab", name="Evaluation").click()
    tables = page.locator("#eval-tables")
    report = json.loads((run / "eval" / "rerank-test.json").read_text())
    expect(tables).to_contain_text(report["title"])
    pre_rank = report["rows"][0]
    expect(tables).to_contain_text(f"{pre_rank['NDCG@5']:.4f}")  # the figures are the JSON's
    expect(page.locator("[data-testid=eval-plots] img").first).to_be_visible()
    page.screenshot(path=str(screenshots / "demo-evaluation.png"), full_page=True)
    assert sorted(p.name for p in screenshots.glob("*.png")) == ["demo-cascade.png", "demo-evaluation.png",
                                                                 "demo-rerank.png"]


def test_server_errors_are_messages_in_the_page(demo_urls, browser):
    """A request the server refuses (unknown item id) shows the server's message, not a stack trace."""
    from playwright.sync_api import expect

    page_url, _ = demo_urls
    page = browser.new_page()
    page.goto(page_url)
    expect(page.locator("#server-status")).to_contain_text("server ok", timeout=ANSWER_TIMEOUT_MS)
    page.locator("#candidate-ids textarea").fill("no-such-item, 1")
    page.locator("#run-rerank").click()
    message = page.locator("#rerank-message")
    expect(message).to_contain_text("unknown item id 'no-such-item'")
    assert "Traceback" not in page.content()
