"""Item text as data for whatever model is served: strip the served tokenizer's own markup.

``gr2.rerank_format.sanitize_item_text`` (shared with training, so training prompts never change)
knows the markup of the models this project trains: ChatML ``<|...|>`` tokens, SID tokens, the
reasoning and emphasis tags. A served model of another family has other control tokens: Gemma's
``<start_of_turn>``, Llama 3's ``<|start_header_id|>``, Mistral's ``[INST]`` (a control token in its
newer tokenizers, plain text its chat template writes in older ones), DeepSeek's full-width
``<｜User｜>``. A title carrying one of them could pose as a turn of the conversation.

``ItemTextGuard`` is built from the served tokenizer and removes, from item text, every string the
tokenizer treats as a special or added token plus the markup-shaped literals of its chat template,
matched without regard to case or to full-width forms (``＜start_of_turn＞`` reads the same to a
model). Only markup-shaped strings are removed (they contain one of ``<>[]|``), so an added token
that is an ordinary word never eats a title's words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gr2.rerank_format import sanitize_item_text

_MARKUP_CHARS = frozenset("<>[]|｜")
# markup-shaped literals in a chat template's scaffolding: <tag>, <|tag|>, <｜tag｜>, [TAG], [/TAG]
_TEMPLATE_MARKUP = re.compile(r"<[|｜][^<>\n]{1,48}[|｜]>|</?[A-Za-z_][^<>\s]{0,47}>|\[/?[A-Za-z_][A-Za-z0-9_]{0,31}\]")
_SENTINEL = "GR2ITEMTEXTSENTINEL"


def _fold_char(c: str) -> str:
    """One character to one character (so positions survive): full-width ASCII to ASCII, lower case."""
    code = ord(c)
    if 0xFF01 <= code <= 0xFF5E:
        c = chr(code - 0xFEE0)
    elif code == 0x3000:  # ideographic space
        c = " "
    lower = c.lower()
    return lower if len(lower) == 1 else c


def fold(text: str) -> str:
    """``text`` with every character folded by ``_fold_char``: same length, same positions."""
    return "".join(map(_fold_char, text))


def template_markup(tokenizer) -> set[str]:  # noqa: ANN001 - any Hugging Face tokenizer
    """Markup-shaped literals the tokenizer's chat template writes around the messages ([INST] and the like).

    The template is rendered with sentinel contents (with a system turn, or without where the template
    refuses one); what lies between the sentinels is the template's own text."""
    if not getattr(tokenizer, "chat_template", None):
        return set()
    system, user = {"role": "system", "content": _SENTINEL}, {"role": "user", "content": _SENTINEL}
    for messages in ([system, user], [user]):
        try:
            rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - templates raise on roles they do not support; try the next shape
            continue
        pieces = rendered.split(_SENTINEL)
        return {m.group(0) for piece in pieces for m in _TEMPLATE_MARKUP.finditer(piece)}
    return set()


def tokenizer_markup(tokenizer) -> set[str]:  # noqa: ANN001 - any Hugging Face tokenizer
    """Special and added tokens of ``tokenizer`` plus its chat template's markup, markup-shaped ones only."""
    tokens: set[str] = set(getattr(tokenizer, "all_special_tokens", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    tokens.update(str(getattr(t, "content", t)) for t in decoder.values())
    tokens.update(template_markup(tokenizer))
    return {t for t in tokens if len(t.strip()) >= 2 and _MARKUP_CHARS & set(t)}


class ItemTextGuard:
    """Removes a tokenizer's markup from item text, then applies the training-time sanitizer."""

    def __init__(self, markers: Iterable[str]):
        folded = {fold(m) for m in markers if m}
        self.markers = folded
        self._lengths: dict[str, list[int]] = {}  # first folded character -> marker lengths, longest first
        for m in folded:
            self._lengths.setdefault(m[0], []).append(len(m))
        for first, lengths in self._lengths.items():
            self._lengths[first] = sorted(set(lengths), reverse=True)

    @classmethod
    def for_tokenizer(cls, tokenizer) -> ItemTextGuard:  # noqa: ANN001 - any Hugging Face tokenizer
        return cls(tokenizer_markup(tokenizer))

    def strip_markup(self, text: str) -> str:
        """One pass: every marker occurrence (case- and width-insensitive) becomes a space."""
        folded = fold(text)
        out, i, n = [], 0, len(text)
        while i < n:
            for length in self._lengths.get(folded[i], ()):
                if folded[i : i + length] in self.markers:
                    out.append(" ")
                    i += length
                    break
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def __call__(self, text: str) -> str:
        """Repeated until nothing changes, so a marker split by another cannot be rebuilt by removing it."""
        previous = None
        while previous != text:
            previous = text
            text = sanitize_item_text(self.strip_markup(text), max_chars=len(text) + 1)
        return text
