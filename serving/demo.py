"""The Gradio demo: a page where a person looks at what the served reranker does.

It talks to ``gr2 serve`` over HTTP only (``ApiClient``), the way any client would, so the same page
works against a server in this process or one elsewhere (``gr2 demo --server-url``). A run directory,
when given (``RunView``), adds what the API does not serve: the test split's users with their
held-out next item, item titles, and the run's evaluation reports (``eval/*.json`` and the PNGs).

Tabs: *Rerank* (``/v1/rerank``: history, pre-rank list beside the reranked one with each item's move,
reasoning, latency, flags, emphasised history items), *Cascade* (``/v1/recommend``: retrieved ->
ranked -> reranked) and *Evaluation* (the run's report tables and plots). Whatever goes wrong (server
down, 4xx, 429, timeouts) is shown as a message on the page, never as a stack trace.

The rendering helpers are plain functions of the response JSON, so tests check them without a browser.
"""

from __future__ import annotations

import functools
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiClient", "ApiError", "DemoHandlers", "RunView", "UserCase", "build_demo", "emphasised_positions",
           "launch", "moves", "render_history", "render_lists", "render_plots", "render_reports"]

# Plots the Evaluation tab shows beside the reports (evals.readme.REPORT_GLOBS), relative to the run directory.
PLOT_GLOBS = ("eval/*.png", "rl-*/curve-*.png", "hilight*/**/*.png")


# -- the HTTP side -------------------------------------------------------------------------------------
class ApiError(Exception):
    """A failure a person can act on, worded for the page (no traceback)."""


def error_detail(response: httpx.Response) -> str:
    """The server's own message (FastAPI ``detail``), flattened when it is a validator's list."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):  # pydantic errors: [{"loc": [...], "msg": ...}, ...]
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg', '')}" for d in detail[:5])
    return str(detail)[:500]


@dataclass
class ApiClient:
    """The rerank server's HTTP API as the demo uses it; every failure becomes an ``ApiError``."""

    url: str
    timeout_s: float = 180.0

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = httpx.request(method, f"{self.url}{path}", json=body, timeout=self.timeout_s)
        except httpx.ConnectError:
            raise ApiError(f"cannot reach the rerank server at {self.url} (is `gr2 serve` running? it may still be "
                           "starting: the engine takes about a minute to load)") from None
        except httpx.TimeoutException:
            raise ApiError(f"the rerank server at {self.url} did not answer within {self.timeout_s:.0f} s") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"request to {self.url}{path} failed: {exc}") from None
        if response.status_code == 429:
            retry = response.headers.get("retry-after", "?")
            raise ApiError(f"the server is at its load limit (429); retry in {retry} s: {error_detail(response)}")
        if response.status_code >= 400:
            raise ApiError(f"the server refused the request ({response.status_code}): {error_detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the server answered {path} with something that is not JSON") from None

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def rerank(self, body: dict) -> dict:
        return self._call("POST", "/v1/rerank", body)

    def recommend(self, body: dict) -> dict:
        return self._call("POST", "/v1/recommend", body)


def served_models(health: dict) -> list[str]:
    """The base model and its LoRA adapters, as ``/healthz`` lists them (requests pick one by name)."""
    adapters = health.get("adapters") or []
    return [health["model"], *(adapters if isinstance(adapters, list) else list(adapters))]


def hilight_available(health: dict) -> bool:
    """Whether the server can apply a HiLight actor (``"emphasis": "hilight"``): ``/healthz`` says so."""
    emphasis = health.get("emphasis")
    return bool(health.get("hilight")) or (isinstance(emphasis, list | dict) and "hilight" in emphasis)


# -- the run directory's side --------------------------------------------------------------------------
@dataclass
class UserCase:
    """A test-split user as the run's pre-ranker saw them: what a rerank request for them contains."""

    user_id: str
    history: list[str]  # item ids, oldest first (the recipe's max_history most recent)
    candidates: list[str]  # the pre-ranker's top K, best first
    target: str  # the held-out next item
    target_rank: int  # its rank in the pre-ranker's full ranking (<= K: it is a candidate)

    @property
    def target_is_candidate(self) -> bool:
        return self.target in self.candidates


@dataclass
class RunView:
    """What the demo reads from a run directory: titles, the test split's cases, the evaluation reports."""

    root: Path
    dataset: str = ""
    max_history: int = 10
    titles: dict[str, str] = field(default_factory=dict)
    users: dict[str, UserCase] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> RunView:
        import yaml

        from data.candidates import load_candidates
        from data.prepare import load_prepared

        root = Path(root)
        recipe = yaml.safe_load((root / "recipe.yaml").read_text()) or {}
        ds = load_prepared(recipe["dataset"])
        ids = ds.items["item_id"].astype(str).tolist()
        view = cls(root, ds.name, int(recipe.get("max_history", 10)),
                   dict(zip(ids, ds.items["title"].astype(str).tolist(), strict=True)))
        if (root / "ranker" / "candidates" / "test.parquet").is_file():
            for row in load_candidates(root / "ranker", "test").itertuples():
                history = ds.sequences[int(row.user)][: int(row.history_len)][-view.max_history:]
                view.users[str(row.user_id)] = UserCase(str(row.user_id), [ids[i] for i in history],
                                                        [ids[int(c)] for c in row.candidates], ids[int(row.target)],
                                                        int(row.target_rank))
        return view

    def user_choices(self) -> list[tuple[str, str]]:
        """Dropdown entries (label, user id); users whose next item is a candidate first, as a reranker can
        only move it when it is."""
        cases = sorted(self.users.values(), key=lambda c: (not c.target_is_candidate, _numeric_key(c.user_id)))
        return [(f"{c.user_id}" + (f"  (next item at pre-rank {c.candidates.index(c.target) + 1})"
                                   if c.target_is_candidate else "  (next item not a candidate)"), c.user_id)
                for c in cases]

    def reports(self) -> list[dict]:
        """The run's evaluation reports (``REPORT_GLOBS``, as ``evals.report.write_report`` writes them), each
        named by its path in the run without ``.json``."""
        from evals.readme import REPORT_GLOBS

        reports = []
        for pattern in REPORT_GLOBS:
            for path in sorted(self.root.glob(pattern)):
                try:
                    report = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(report, dict) and isinstance(report.get("rows"), list):
                    reports.append({"name": str(path.relative_to(self.root).with_suffix("")), **report})
        return reports

    def plots(self) -> list[tuple[str, str]]:
        """(path, caption) of the run's PNG plots: report charts, RL curves, HiLight's."""
        found: dict[Path, None] = {}
        for pattern in PLOT_GLOBS:
            for path in sorted(self.root.glob(pattern)):
                found[path] = None
        return [(str(p), str(p.relative_to(self.root))) for p in found]


def _numeric_key(user_id: str) -> tuple[int, str]:
    return (int(user_id), "") if user_id.isdigit() else (1 << 62, user_id)


# -- rendering (pure functions of the response) --------------------------------------------------------
def parse_ids(text: str) -> list[str]:
    """Item ids typed by a person: separated by commas, spaces or new lines."""
    return [t for t in re.split(r"[\s,;]+", text or "") if t]


def parse_positions(text: str, n: int) -> list[int]:
    """1-based history positions typed by a person -> the API's 0-based ``emphasize_history``."""
    out = []
    for token in parse_ids(text):
        if not token.isdigit() or not 1 <= int(token) <= n:
            raise ApiError(f"emphasise: {token!r} is not a history position (1..{n})")
        out.append(int(token) - 1)
    return sorted(set(out))


def moves(response: dict) -> list[dict]:
    """Each reranked item with its pre-rank position and its move (positive: moved up), from ``results``."""
    return [{"id": r["id"], "rank": rank, "pre_rank": r["index"] + 1, "move": r["index"] + 1 - rank,
             "score": r.get("relevance_score")}
            for rank, r in enumerate(response.get("results", []), 1)]


def emphasised_positions(response: dict | None, requested: list[int]) -> tuple[list[int], str]:
    """History positions (0-based, the request's) that were emphasised, and by whom.

    HiLight's spans come back in the response (``emphasis_spans``, or ``spans`` under ``emphasis``) as
    history positions or objects with a ``position`` (or an item range ``start``..``end``); a response
    without them leaves the positions the request asked for."""
    spans: Any = None
    if response:
        emphasis = response.get("emphasis")
        spans = response.get("emphasis_spans") or response.get("spans") or (
            emphasis.get("spans") if isinstance(emphasis, dict) else None)
    if not spans:
        return sorted(set(requested)), "requested"
    positions: set[int] = set()
    for span in spans:
        if isinstance(span, int):
            positions.add(span)
        elif isinstance(span, dict):
            for key in ("position", "history_index", "item"):
                if isinstance(span.get(key), int):
                    positions.add(span[key])
                    break
            else:
                if isinstance(span.get("start"), int) and isinstance(span.get("end"), int):
                    positions.update(range(span["start"], span["end"]))
    return sorted(positions), "HiLight"


def _item(item_id: str, titles: dict[str, str]) -> str:
    title = titles.get(item_id)
    return (f"{html.escape(title)} <span class='gr2-id'>#{html.escape(item_id)}</span>" if title
            else f"<span class='gr2-id'>#{html.escape(item_id)}</span>")


def _arrow(move: int) -> str:
    if move > 0:
        return f"<span class='gr2-up' title='moved up {move}'>&uarr;{move}</span>"
    if move < 0:
        return f"<span class='gr2-down' title='moved down {-move}'>&darr;{-move}</span>"
    return "<span class='gr2-same' title='unchanged'>=</span>"


def span_texts(response: dict | None) -> dict[int, list[str]]:
    """HiLight's span texts per history position (``emphasis_spans[].text``), for highlighting inside a title."""
    texts: dict[int, list[str]] = {}
    for span in (response or {}).get("emphasis_spans") or []:
        if isinstance(span, dict) and isinstance(span.get("history_index"), int) and span.get("text"):
            texts.setdefault(span["history_index"], []).append(str(span["text"]))
    return texts


def _marked_title(title: str, texts: list[str], tip: str) -> str | None:
    """The title with the first span that lies inside it marked (a token-level span), or None."""
    for text in texts:
        text = re.sub(r"<\|sid_begin\|>.*?<\|sid_end\|>", "", text).strip()  # the SID is not part of the title
        if text and text != title and text in title:
            i = title.index(text)
            return (f"{html.escape(title[:i])}<mark class='gr2-emph' title='{tip}'>{html.escape(text)}</mark>"
                    f"{html.escape(title[i + len(text):])}")
    return None


def render_history(history: list[str], titles: dict[str, str], emphasised: list[int] = (), source: str = "",
                   used: int | None = None, texts: dict[int, list[str]] | None = None) -> str:
    """The history, oldest first; emphasised items highlighted (only the span when HiLight marked part of a
    title); items the model did not see greyed."""
    if not history:
        return "<p class='gr2-muted'>No history.</p>"
    unseen = len(history) - used if used is not None else 0
    tip = f"emphasised ({html.escape(source)})"
    lines = []
    for pos, item_id in enumerate(history):
        classes = ["gr2-hist"] + (["gr2-unseen"] if pos < unseen else [])
        body = _item(item_id, titles)
        if pos in emphasised:
            inside = _marked_title(titles.get(item_id, ""), (texts or {}).get(pos, []), tip)
            body = (f"{inside} <span class='gr2-id'>#{html.escape(item_id)}</span>" if inside
                    else f"<mark class='gr2-emph' title='{tip}'>{body}</mark>")
        lines.append(f"<li class='{' '.join(classes)}' data-pos='{pos + 1}' data-id='{html.escape(item_id)}'>"
                     f"{body}</li>")
    note = f"<p class='gr2-muted'>{len(emphasised)} item(s) emphasised ({html.escape(source)}).</p>" if emphasised \
        else ""
    if unseen > 0:
        note += f"<p class='gr2-muted'>The model saw the {used} most recent items (greyed: left out).</p>"
    return f"<ol class='gr2-history' data-testid='history'>{''.join(lines)}</ol>{note}"


def render_lists(candidates: list[str], response: dict, titles: dict[str, str], target: str | None = None,
                 extra: dict[str, str] | None = None) -> str:
    """The pre-rank list beside the reranked list: positions, moves (arrows), the held-out next item marked.

    ``extra`` adds a note per item id (e.g. the cascade's ranker score)."""
    extra = extra or {}

    def mark(item_id: str) -> str:
        return " <span class='gr2-target' title='the held-out next item'>&#9733; next item</span>" \
            if item_id == target else ""

    pre = "".join(f"<li data-id='{html.escape(c)}' data-pos='{i}'>{_item(c, titles)}{mark(c)}"
                  f"{extra.get(c, '')}</li>" for i, c in enumerate(candidates, 1))
    post = "".join(
        f"<li data-id='{html.escape(m['id'])}' data-rank='{m['rank']}' data-pre='{m['pre_rank']}' "
        f"data-move='{m['move']}'><span class='gr2-move'>{_arrow(m['move'])} "
        f"<span class='gr2-from'>{m['pre_rank']}&rarr;{m['rank']}</span></span> {_item(m['id'], titles)}"
        f"{mark(m['id'])}</li>" for m in moves(response))
    return ("<div class='gr2-lists'>"
            f"<div><h4>Pre-rank order ({len(candidates)} candidates)</h4>"
            f"<ol class='gr2-pre' data-testid='prerank-list'>{pre}</ol></div>"
            f"<div><h4>Reranked by {html.escape(str(response.get('model', 'the model')))}</h4>"
            f"<ol class='gr2-post' data-testid='reranked-list'>{post}</ol>"
            + ("" if post else "<p class='gr2-muted'>Press Rerank to see the model's order.</p>") + "</div></div>")


def render_meta(response: dict, latency_ms: float) -> str:
    """Latency, tokens, the repaired / fallback flags and the server's warnings, as one Markdown block."""
    usage = response.get("usage") or {}
    flag = {True: "**yes**", False: "no"}
    fallback = flag[bool(response.get("fallback"))]
    if response.get("fallback") and response.get("fallback_reason"):
        fallback += f" ({response['fallback_reason']})"
    lines = [f"**latency** {latency_ms:,.0f} ms &nbsp; **tokens** {usage.get('prompt_tokens', '?')} prompt + "
             f"{usage.get('completion_tokens', '?')} answer &nbsp; **repaired** {flag[bool(response.get('repaired'))]}"
             f" &nbsp; **fallback** {fallback}"]
    lines += [f"- warning: {w}" for w in response.get("warnings") or []]
    return "\n".join(lines)


def render_reports(reports: list[dict]) -> str:
    """Each evaluation report as an HTML table, from its JSON (columns as the report lists them)."""
    if not reports:
        return "<p class='gr2-muted'>This run has no evaluation reports yet (eval/*.json).</p>"

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape(str(value))

    out = []
    for report in reports:
        columns = ["system", *[c for c in report.get("columns", []) if c != "system"]]
        if "users" in {k for row in report["rows"] for k in row} and "users" not in columns:
            columns.append("users")
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>"
                       for row in report["rows"])
        out.append(f"<h4 data-report='{html.escape(report['name'])}'>{html.escape(str(report.get('title', '')))}"
                   f" <span class='gr2-id'>{html.escape(report['name'])}.json</span></h4>"
                   f"<div class='gr2-table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    return "".join(out)


def render_plots(plots: list[tuple[str, str]]) -> str:
    """The plots inline (PNG as data URIs: the page needs no file route into the run directory), two a row."""
    import base64

    if not plots:
        return "<p class='gr2-muted'>No plots in this run yet.</p>"
    cells = []
    for path, caption in plots:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        cells.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption class='gr2-id'>{html.escape(caption)}</figcaption></figure>")
    return f"<div class='gr2-plots' data-testid='eval-plots'>{''.join(cells)}</div>"


def message(text: str, kind: str = "error") -> str:
    """A message box for the page (``kind``: error, info, ok); text is escaped, an empty text shows nothing."""
    if not text:
        return ""
    return f"<div class='gr2-msg gr2-{kind}' data-testid='message'>{html.escape(text, quote=False)}</div>"


def shown_as_message(outputs: int) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Handlers return their outputs plus a message last; any failure becomes that message, the other
    outputs left as they were (``gr.skip``) and no traceback reaches the page."""
    import gradio as gr

    def wrap(fn: Callable[..., tuple]) -> Callable[..., tuple]:
        @functools.wraps(fn)
        def handler(*args: Any) -> tuple:
            try:
                return fn(*args)
            except ApiError as exc:
                return (*[gr.skip()] * outputs, message(str(exc)))
            except Exception as exc:  # noqa: BLE001 - the page shows a sentence, the console keeps the details
                import traceback

                traceback.print_exc()
                return (*[gr.skip()] * outputs, message(f"the demo failed: {type(exc).__name__}: {exc}"))

        return handler

    return wrap


CSS = """
.gr2-lists {display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em;}
.gr2-lists ol, .gr2-history {margin: 0; padding-left: 2em;}
.gr2-lists li, .gr2-history li {padding: 2px 0;}
.gr2-id {color: #888; font-size: 0.85em;}
.gr2-up {color: #15803d; font-weight: 600;}
.gr2-down {color: #b91c1c; font-weight: 600;}
.gr2-same {color: #888;}
.gr2-move {display: inline-block; min-width: 5.5em;}
.gr2-from {color: #888; font-size: 0.85em;}
.gr2-target {background: #fef3c7; color: #92400e; border-radius: 4px; padding: 0 4px; font-size: 0.85em;}
.gr2-emph {background: #fde68a; padding: 0 2px;}
.gr2-unseen {opacity: 0.45;}
.gr2-muted {color: #888; font-size: 0.9em;}
.gr2-msg {padding: 8px 12px; border-radius: 6px; margin: 4px 0;}
.gr2-error {background: #fee2e2; color: #991b1b; border: 1px solid #fca5a5;}
.gr2-ok {background: #dcfce7; color: #166534; border: 1px solid #86efac;}
.gr2-info {background: #e0f2fe; color: #075985; border: 1px solid #7dd3fc;}
.gr2-table {overflow-x: auto;}
.gr2-plots {display: grid; grid-template-columns: 1fr 1fr; gap: 1em;}
.gr2-plots figure {margin: 0;}
.gr2-plots img {width: 100%; height: auto; border: 1px solid #eee;}
.gr2-table table {border-collapse: collapse; font-size: 0.85em;}
.gr2-table th, .gr2-table td {border: 1px solid #ddd; padding: 2px 6px; text-align: right;}
.gr2-table td:first-child, .gr2-table th:first-child {text-align: left;}
"""


# -- the page ------------------------------------------------------------------------------------------
class DemoHandlers:
    """What the page's buttons do, as plain methods (tests call them without a browser).

    Each returns its components' new values; the rerank and cascade handlers end with a message slot
    (empty on success) and turn every failure into that message (``shown_as_message``)."""

    def __init__(self, client: ApiClient, run: RunView | None = None):
        self.client, self.run = client, run
        self.titles = run.titles if run else {}

    def check_server(self, current: str | None = None) -> tuple:
        """(model choices, status line, HiLight switch, poll timer): polling stops once the server answers."""
        import gradio as gr

        try:
            health = self.client.health()
        except ApiError as exc:
            return gr.update(), message(str(exc)), gr.update(), gr.Timer(active=True)
        names = served_models(health)
        can_hilight = hilight_available(health)
        trained = health.get("trained") or {}
        text = message(f"server {health.get('status', '?')} · backend {health.get('backend', '?')} · "
                       f"{health.get('items', '?')} items · trained on {trained.get('k', '?')} candidates and "
                       f"{trained.get('max_history', '?')} history items"
                       + ("" if health.get("recommend") else " · no cascade (the run has no ranker)"), "ok")
        return (gr.update(choices=names, value=current if current in names else names[0]), text,
                gr.update(interactive=can_hilight, label="HiLight emphasis (the run's actor)" if can_hilight
                          else "HiLight emphasis (this server has no actor)"), gr.Timer(active=False))

    def pick_user(self, user_id: str | None) -> tuple:
        """A test-split user's history and candidates into the boxes (the pre-rank list shown), the held-out
        item into the state."""
        import gradio as gr

        case = self.run.users.get(user_id) if self.run and user_id else None
        if case is None:
            return gr.update(), gr.update(), "", None, gr.update(), gr.update()
        return (", ".join(case.history), ", ".join(case.candidates), "", case.target,
                render_history(case.history, self.titles), render_lists(case.candidates, {}, self.titles, case.target))

    @shown_as_message(outputs=5)
    def rerank(self, model_name: str | None, use_hilight: bool, history_text: str, candidates_text: str,
               emphasis_text: str, target_id: str | None) -> tuple:
        """POST /v1/rerank -> (history, lists, meta, reasoning, response JSON, message)."""
        history, candidates = parse_ids(history_text), parse_ids(candidates_text)
        if not candidates:
            raise ApiError("give at least one candidate item id (or pick a user)")
        requested = parse_positions(emphasis_text, len(history))
        body: dict[str, Any] = {"history": [{"id": i} for i in history],
                                "candidates": [{"id": i} for i in candidates], "return_reasoning": True,
                                "emphasize_history": requested}
        if model_name:
            body["model"] = model_name
        if use_hilight:
            body["emphasis"] = "hilight"
        start = time.perf_counter()
        answer = self.client.rerank(body)
        latency_ms = (time.perf_counter() - start) * 1000
        emphasised, source = emphasised_positions(answer, requested)
        return (render_history(history, self.titles, emphasised, source, answer.get("history_used"),
                               span_texts(answer)),
                render_lists(candidates, answer, self.titles, target_id if target_id in candidates else None),
                render_meta(answer, latency_ms), answer.get("reasoning") or "", json.dumps(answer, indent=2), "")

    @shown_as_message(outputs=3)
    def recommend(self, model_name: str | None, user_id: str | None, history_text: str, k: float | None,
                  top_n: float | None) -> tuple:
        """POST /v1/recommend -> (funnel and lists, meta, reasoning, message); every candidate is returned unless
        ``top_n`` says otherwise, so each one's move shows."""
        body: dict[str, Any] = {"return_reasoning": True}
        if user_id:
            body["user_id"] = str(user_id)
        else:
            history = parse_ids(history_text)
            if not history:
                raise ApiError("give a user id or a history of item ids")
            body["history"] = [{"id": i} for i in history]
        if model_name:
            body["model"] = model_name
        if k:
            body["k"] = int(k)
        body["top_n"] = int(top_n) if top_n else int(k or (self.client.health().get("trained") or {}).get("k") or 10)
        start = time.perf_counter()
        answer = self.client.recommend(body)
        latency_ms = (time.perf_counter() - start) * 1000
        scores = {r["id"]: f" <span class='gr2-id'>ranker score {r['ranker_score']:.3f}</span>"
                  for r in answer["results"]}
        reranked = {"model": answer["model"], "results": [{"index": r["pre_rank"], "id": r["id"]}
                                                          for r in answer["results"]]}
        titles = {**self.titles, **{r["id"]: r["title"] for r in answer["results"]}}
        funnel = (f"<p data-testid='cascade-funnel'><b>retrieved</b> {answer['retrieved']} unseen items &rarr; "
                  f"<b>ranked</b> by the run's ranker, top {len(answer['candidates'])} &rarr; <b>reranked</b>, "
                  f"top {len(answer['results'])} returned</p>")
        return (funnel + render_lists(answer["candidates"], reranked, titles, extra=scores),
                render_meta(answer, latency_ms), answer.get("reasoning") or "", "")

    def evaluation(self) -> tuple[str, str]:
        """(report tables, plots) read from the run directory now: a report written since shows on reload."""
        if self.run is None:
            return message("no run directory: start the demo with --run RUN to see its evaluation", "info"), ""
        return render_reports(self.run.reports()), render_plots(self.run.plots())


def build_demo(client: ApiClient, run: RunView | None = None):  # noqa: ANN201 - a gr.Blocks
    """The Blocks app: model switch and server status on top, then the Rerank, Cascade and Evaluation tabs."""
    import gradio as gr

    on = DemoHandlers(client, run)
    user_choices = run.user_choices() if run else []
    first_user = user_choices[0][1] if user_choices else None

    with gr.Blocks(title="GR2 reranker demo", analytics_enabled=False) as demo:
        gr.Markdown("## GR2: generative reasoning reranker\n"
                    f"Server `{client.url}`" + (f" · run `{run.root}` ({run.dataset})" if run else
                                                " · no run directory (pass `--run` for users and evaluation)"))
        with gr.Row():
            model = gr.Dropdown(label="Model (base or LoRA adapter, from /healthz)", choices=[], interactive=True,
                                scale=2, elem_id="model")
            status = gr.HTML(message("checking the server...", "info"), elem_id="server-status")
            refresh = gr.Button("Refresh server status", scale=0)
        poll = gr.Timer(3.0)  # until the server answers: it may still be loading its engine

        with gr.Tabs():
            with gr.Tab("Rerank", id="rerank"):
                with gr.Row():
                    user = gr.Dropdown(label="Test-split user (type to search by id)", choices=user_choices,
                                       value=first_user, filterable=True, elem_id="user", scale=2)
                    hilight = gr.Checkbox(label="HiLight emphasis (the run's actor)", value=False, interactive=False,
                                          elem_id="hilight", scale=1)
                with gr.Row():
                    history_box = gr.Textbox(label="History: item ids, oldest first (or type your own)", lines=2,
                                             elem_id="history-ids")
                    candidates_box = gr.Textbox(label="Candidates: item ids in pre-rank order", lines=2,
                                                elem_id="candidate-ids")
                    emphasis_box = gr.Textbox(label="Emphasise history positions (1-based, optional)", lines=1,
                                              elem_id="emphasis")
                target = gr.State(None)
                run_rerank = gr.Button("Rerank", variant="primary", elem_id="run-rerank")
                rerank_msg = gr.HTML(elem_id="rerank-message")
                with gr.Row():
                    with gr.Column(scale=1):
                        gr.Markdown("#### History")
                        history_view = gr.HTML(elem_id="history-view")
                    with gr.Column(scale=2):
                        lists_view = gr.HTML(elem_id="lists-view")
                meta_view = gr.Markdown(elem_id="rerank-meta")
                reasoning = gr.Textbox(label="Reasoning", lines=3, interactive=False, elem_id="reasoning")
                with gr.Accordion("Response JSON", open=False, elem_id="response-accordion"):
                    response_json = gr.Textbox(show_label=False, lines=12, max_lines=40, interactive=False,
                                               autoscroll=False, buttons=["copy"], elem_id="response-json")

            with gr.Tab("Cascade", id="cascade"):
                gr.Markdown("`POST /v1/recommend`: a retriever picks unseen items, the run's ranker orders them, "
                            "its top K go to the reranker. A known user's whole history is used.")
                with gr.Row():
                    cascade_user = gr.Dropdown(label="User id", choices=[c[1] for c in user_choices],
                                               value=first_user, filterable=True, allow_custom_value=True,
                                               elem_id="cascade-user")
                    cascade_history = gr.Textbox(label="...or a history of item ids (used when the user is empty)",
                                                 lines=1, elem_id="cascade-history")
                    cascade_k = gr.Number(label="K, candidates reranked (0: the trained K)", value=0, precision=0,
                                          minimum=0, elem_id="cascade-k")
                    cascade_top = gr.Number(label="top N returned (0: all K)", value=0, precision=0, minimum=0,
                                            elem_id="cascade-top")
                run_cascade = gr.Button("Recommend", variant="primary", elem_id="run-cascade")
                cascade_msg = gr.HTML(elem_id="cascade-message")
                cascade_view = gr.HTML(elem_id="cascade-view")
                cascade_meta = gr.Markdown()
                cascade_reasoning = gr.Textbox(label="Reasoning", lines=3, interactive=False)

            with gr.Tab("Evaluation", id="evaluation", elem_id="evaluation-tab"):
                gr.Markdown("The run's latest evaluation reports, read from `eval/*.json`, and its plots "
                            "(`eval/*.png`, RL curves, HiLight).")
                reload_eval = gr.Button("Reload from the run directory", scale=0)
                eval_tables = gr.HTML(elem_id="eval-tables")
                eval_plots = gr.HTML(elem_id="eval-plots")

        health_outputs = [model, status, hilight, poll]
        demo.load(on.check_server, inputs=model, outputs=health_outputs)
        poll.tick(on.check_server, inputs=model, outputs=health_outputs)
        refresh.click(on.check_server, inputs=model, outputs=health_outputs)
        case_outputs = [history_box, candidates_box, emphasis_box, target, history_view, lists_view]
        demo.load(on.pick_user, inputs=user, outputs=case_outputs)
        user.change(on.pick_user, inputs=user, outputs=case_outputs)
        run_rerank.click(on.rerank, inputs=[model, hilight, history_box, candidates_box, emphasis_box, target],
                         outputs=[history_view, lists_view, meta_view, reasoning, response_json, rerank_msg])
        run_cascade.click(on.recommend, inputs=[model, cascade_user, cascade_history, cascade_k, cascade_top],
                          outputs=[cascade_view, cascade_meta, cascade_reasoning, cascade_msg])
        demo.load(on.evaluation, outputs=[eval_tables, eval_plots])
        reload_eval.click(on.evaluation, outputs=[eval_tables, eval_plots])
    return demo


def launch(demo, host: str = "127.0.0.1", port: int = 7860, block: bool = False) -> str:  # noqa: ANN001 - gr.Blocks
    """Serve the page on ``host:port`` (no share link, no analytics); returns its URL."""
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                            quiet=True, show_error=True, theme=theme, css=CSS, footer_links=["api"])
    return url or f"http://{host}:{port}/"
