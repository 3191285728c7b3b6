"""The rerank task's prompt and answer, exactly as ``DESIGN.md`` fixes them.

Prompt: the user's recent history and K candidates in the pre-ranker's order, each as SID + title,
in chat messages. Answer: ``<think>reasoning</think>`` then ``{"recommendations": [SID, ...]}``, a
permutation of the candidates. A recipe may instead name candidates by their number in the list
(``answer_format: index``, ``{"recommendations": ["3", "1", ...]}``), as RankGPT-style listwise rerankers
(rank_llm) do: keeping the input order is then counting, not copying K multi-token SIDs, which a small
model trained from scratch does not learn (``gr2 eval diagnose``). ``answer_keys`` gives a request's keys
in either format; everything downstream (constraint, parser, rewards) works on keys.

The parser never fails: unknown or duplicate keys are dropped and missing ones appended in pre-rank order
(``repaired``); an answer naming no candidate at all falls back to the pre-rank order (``fallback``). Item
text is data: special and SID tokens are stripped from titles before they reach a prompt, so a title cannot
pose as markup or as another item.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPHASIS_OPEN, EMPHASIS_CLOSE = "<start_important>", "<end_important>"

SYSTEM_PROMPT = (
    "You are a recommendation reranker. Given a user's recent items and a list of candidate items, "
    "think briefly about what the user wants next, then rank every candidate from most to least likely. "
    f"Text between {EMPHASIS_OPEN} and {EMPHASIS_CLOSE} is the most important evidence. "
    f'Answer with {THINK_OPEN}reasoning{THINK_CLOSE} followed by JSON {{"recommendations": [SID, ...]}} '
    "listing each candidate SID exactly once."
)
INDEX_SYSTEM_PROMPT = SYSTEM_PROMPT.replace("[SID, ...]", '["n", ...]').replace(
    "each candidate SID exactly once", "each candidate's number n exactly once")
ANSWER_FORMATS = ("sid", "index")
SYSTEM_PROMPTS = {"sid": SYSTEM_PROMPT, "index": INDEX_SYSTEM_PROMPT}


def answer_keys(candidate_sids: Sequence[str], answer_format: str = "sid") -> list[str]:
    """How an answer names each candidate, in pre-rank order: its SID, or its number in the prompt's list."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    return list(candidate_sids) if answer_format == "sid" else [str(i + 1) for i in range(len(candidate_sids))]

# Anything that could be read as markup by the model or by our parser: chat special tokens
# (<|im_start|>, <|sid_begin|>, <|endoftext|>...), SID level tokens, reasoning and emphasis tags, and
# Gemma's control tokens (<start_of_turn>, <bos>, <unused12>..., gr2.gemma) for the models trained on it.
_MARKUP = re.compile(
    r"<\|[^<>|]{0,64}\|>|<s_[a-z]{1,2}_\d{1,6}>|</?think>|<(?:start|end)_important>|</?tool_call>"
    r"|<(?:start|end)_of_(?:turn|image)>|<(?:bos|eos|pad|unk|mask|image_soft_token)>|<unused\d{1,5}>"
    r"|\[multimodal\]",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


def sanitize_item_text(text: str, max_chars: int = 200) -> str:
    """Item text as inert data: markup tokens removed (repeatedly, so splices cannot rebuild one),
    whitespace collapsed, length capped."""
    previous = None
    while previous != text:
        previous, text = text, _MARKUP.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return text[:max_chars].rstrip()


@dataclass(frozen=True)
class PromptItem:
    sid: str  # e.g. <|sid_begin|><s_a_12><s_b_3><s_c_200><|sid_end|>
    title: str
    note: str = ""  # a candidate's evidence level (gr2.prompt_evidence), listed after the candidates; never history
    strength: float = 0.0  # the value behind the note: orders the evidence line


# Character ranges (start, end) within an item's line (``item_line``) to wrap in emphasis tags.
Spans = Sequence[tuple[int, int]]
# History emphasis: positions of whole items, or position -> character ranges within that item's line (HiLight).
Emphasis = Sequence[int] | Mapping[int, Spans]


def item_line(item: PromptItem) -> str:
    """An item as a prompt shows it: SID and sanitised title (emphasis spans are offsets into this text)."""
    return f"{item.sid} {sanitize_item_text(item.title)}"


def emphasize_text(text: str, spans: Spans) -> str:
    """``text`` with each (start, end) range wrapped in emphasis tags, inserted right to left so the
    offsets stay valid and the text itself is unchanged; ranges must be non-empty, in bounds, disjoint."""
    ordered = sorted((int(s), int(e)) for s, e in spans)
    for (s, e), nxt in zip(ordered, [*ordered[1:], None], strict=True):
        if not 0 <= s < e <= len(text) or (nxt is not None and nxt[0] < e):
            raise ValueError(f"emphasis spans must be non-empty, within 0..{len(text)} and disjoint: {ordered}")
    for s, e in reversed(ordered):
        text = f"{text[:s]}{EMPHASIS_OPEN}{text[s:e]}{EMPHASIS_CLOSE}{text[e:]}"
    return text


def format_item(item: PromptItem, emphasized: bool | Spans = False) -> str:
    """The item's line; ``True`` wraps all of it (as SFT prompts do), spans wrap those character ranges."""
    line = item_line(item)
    if emphasized is True:
        return f"{EMPHASIS_OPEN}{line}{EMPHASIS_CLOSE}"
    return emphasize_text(line, emphasized) if emphasized else line


def build_user_prompt(
    history: Sequence[PromptItem],
    candidates: Sequence[PromptItem],
    emphasized_history: Emphasis = (),
) -> str:
    """History oldest first (numbered), then candidates in pre-rank order (numbered); candidates are never
    emphasised."""
    marked = emphasized_history if isinstance(emphasized_history, Mapping) else \
        dict.fromkeys(emphasized_history, True)
    lines = ["User history (oldest first):"]
    lines += [f"{i + 1}. {format_item(item, marked.get(i, False))}" for i, item in enumerate(history)]
    lines += ["", f"Candidates ({len(candidates)}, in the current ranking's order):"]
    lines += [f"{i + 1}. {format_item(item)}" for i, item in enumerate(candidates)]
    noted = [i for i, item in enumerate(candidates) if item.note]
    if noted:  # strongest first, then list order (a level is a range of strengths)
        noted.sort(key=lambda i: (-candidates[i].strength, i))
        # numbers quoted as answers write them ("8" is one token, " 8" another): the line reads like an answer
        entries = ", ".join(f'"{i + 1}" ({candidates[i].note})' for i in noted)
        lines += ["", f"Picked with your recent items: {entries}"]
    lines += ["", "Rank all candidates."]
    return "\n".join(lines)


def build_messages(
    history: Sequence[PromptItem],
    candidates: Sequence[PromptItem],
    emphasized_history: Emphasis = (),
    answer_format: str = "sid",
) -> list[dict[str, str]]:
    answer_keys([], answer_format)  # checks the format
    return [
        {"role": "system", "content": SYSTEM_PROMPTS[answer_format]},
        {"role": "user", "content": build_user_prompt(history, candidates, emphasized_history)},
    ]


def format_answer(reasoning: str, ranked_sids: Sequence[str]) -> str:
    """The assistant turn a teacher trace or SFT target contains."""
    body = json.dumps({"recommendations": list(ranked_sids)}, ensure_ascii=False)
    return f"{THINK_OPEN}{reasoning.strip()}{THINK_CLOSE}\n{body}"


@dataclass
class ParsedAnswer:
    order: list[int]  # candidate indices (pre-rank positions), best first: always a full permutation
    reasoning: str = ""
    valid: bool = False  # parsed as JSON into an exact permutation, no repair needed
    repaired: bool = False  # some SIDs were dropped or appended to make a permutation
    fallback: bool = False  # nothing usable: order is the pre-rank order
    problems: list[str] = field(default_factory=list)

    @property
    def is_identity(self) -> bool:
        """The model's own answer reproduces the input order (a fallback is not the model's answer)."""
        return not self.fallback and self.order == list(range(len(self.order)))


def _json_sids(text: str) -> list[str] | None:
    """The ``recommendations`` list of the last JSON object in ``text``, or None."""
    end = text.rfind("}")
    start = text.rfind("{", 0, end + 1)
    while start != -1:
        try:
            obj = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            start = text.rfind("{", 0, start)
            continue
        recs = obj.get("recommendations") if isinstance(obj, dict) else None
        if isinstance(recs, list) and all(isinstance(r, str) for r in recs):
            return recs
        return None
    return None


def parse_answer(text: str, candidate_sids: Sequence[str]) -> ParsedAnswer:
    """Turn model output into a permutation of the candidates; never raises."""
    k = len(candidate_sids)
    position = {sid: i for i, sid in enumerate(candidate_sids)}
    reasoning, answer = "", text
    if THINK_CLOSE in text:
        head, _, answer = text.rpartition(THINK_CLOSE)
        reasoning = head.split(THINK_OPEN, 1)[-1].strip()
    problems: list[str] = []

    sids = _json_sids(answer)
    if sids is None:
        problems.append("no JSON recommendations list")
        # Repair path: candidate SIDs in the order they appear in the answer text.
        found = sorted((answer.find(sid), sid) for sid in candidate_sids if sid in answer)
        sids = [sid for _, sid in found]
        if not sids:
            return ParsedAnswer(list(range(k)), reasoning, fallback=True, problems=problems)

    order, seen = [], set()
    for sid in sids:
        i = position.get(sid)
        if i is None:
            problems.append(f"unknown SID {sid[:80]!r}")
        elif i in seen:
            problems.append(f"duplicate SID {sid[:80]!r}")
        else:
            seen.add(i)
            order.append(i)
    if not order:
        problems.append("no candidate named")
        return ParsedAnswer(list(range(k)), reasoning, fallback=True, problems=problems)
    missing = [i for i in range(k) if i not in seen]
    if missing:
        problems.append(f"{len(missing)} candidate(s) missing")
        order += missing
    return ParsedAnswer(order, reasoning, valid=not problems, repaired=bool(problems), problems=problems)


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def answer_grammar(candidate_sids: Sequence[str], max_reasoning_chars: int = 600) -> str:
    """A GBNF/EBNF grammar (vLLM structured outputs) for a valid answer over these candidates.

    The reasoning is free text without ``<`` (so it cannot open a tag or a SID), then the JSON
    lists exactly K entries, each one of the request's candidate SIDs. Repeats are possible (a
    permutation constraint needs 2^K states); the parser repairs them and flags ``repaired``.
    """
    if not candidate_sids:
        raise ValueError("a rerank answer needs at least one candidate")
    k = len(candidate_sids)
    sid_rule = " | ".join(_gbnf_literal(f'"{sid}"') for sid in candidate_sids)
    items = "sid" + ' ", " sid' * (k - 1)
    return "\n".join([
        f'root ::= "{THINK_OPEN}" reasoning "{THINK_CLOSE}" "\\n" "{{\\"recommendations\\": [" {items} "]}}"',
        f"reasoning ::= [^<]{{0,{max_reasoning_chars}}}",
        f"sid ::= {sid_rule}",
    ])
