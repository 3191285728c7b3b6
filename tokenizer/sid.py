"""Semantic-ID token strings and the item <-> code <-> SID mapping the later stages use.

A SID is one token per level between two markers: ``<|sid_begin|><s_a_12><s_b_3><s_c_200><|sid_end|>``.
Levels are lettered a, b, c, ...; the last one is the de-duplication level when the tokenizer has one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.artifacts import atomic_path, write_json_atomic
from data.errors import DataError

SID_BEGIN = "<|sid_begin|>"
SID_END = "<|sid_end|>"
LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"
CODE_TOKEN_RE = re.compile(r"<s_([a-z])_(\d+)>")
SID_RE = re.compile(re.escape(SID_BEGIN) + r"((?:<s_[a-z]_\d+>)+)" + re.escape(SID_END))


class SIDParseError(ValueError):
    """A string that is not a well-formed SID (or names codes this tokenizer does not have)."""


def code_token(level: int, code: int) -> str:
    """The token of one level's code: ``code_token(0, 12) == "<s_a_12>"``."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level must be in [0, {len(LEVEL_LETTERS)}), got {level}")
    if code < 0:
        raise ValueError(f"codes are non-negative, got {code}")
    return f"<s_{LEVEL_LETTERS[level]}_{int(code)}>"


def format_sid(codes: Sequence[int] | np.ndarray) -> str:
    """``(12, 3, 200) -> "<|sid_begin|><s_a_12><s_b_3><s_c_200><|sid_end|>"``."""
    codes = [int(c) for c in codes]
    if not codes:
        raise ValueError("a SID needs at least one level")
    return SID_BEGIN + "".join(code_token(level, c) for level, c in enumerate(codes)) + SID_END


def parse_sid(text: str) -> tuple[int, ...]:
    """The inverse of ``format_sid``; surrounding whitespace is allowed, anything else is an error."""
    stripped = text.strip()
    match = SID_RE.fullmatch(stripped)
    if not match:
        raise SIDParseError(f"not a SID: {text!r} (expected {SID_BEGIN}<s_a_N><s_b_N>...{SID_END})")
    return _codes_of(match.group(1), text)


def find_sids(text: str) -> list[tuple[int, ...]]:
    """Every well-formed SID in a longer text (e.g. a model's answer), in order of appearance."""
    return [_codes_of(m.group(1), m.group(0)) for m in SID_RE.finditer(text)]


def _codes_of(body: str, original: str) -> tuple[int, ...]:
    codes = []
    for level, (letter, number) in enumerate(CODE_TOKEN_RE.findall(body)):
        if letter != LEVEL_LETTERS[level]:
            raise SIDParseError(f"level {level} of {original!r} should be '{LEVEL_LETTERS[level]}', got {letter!r}")
        codes.append(int(number))
    return tuple(codes)


@dataclass
class SemanticIDs:
    """The catalogue's semantic IDs: item index <-> code tuple <-> SID string.

    ``level_sizes[l]`` is the vocabulary size of level ``l`` (codebook size, or the largest collision
    group for the de-dup level), so ``tokens()`` lists every token an LLM needs to know.
    """

    codes: np.ndarray  # (num_items, levels) int64, row i = item index i
    level_sizes: tuple[int, ...]
    item_ids: list[str] | None = None
    _index: dict[tuple[int, ...], int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.level_sizes = tuple(int(s) for s in self.level_sizes)
        if self.codes.ndim != 2 or self.codes.shape[1] != len(self.level_sizes):
            raise DataError(f"codes of shape {self.codes.shape} do not match {len(self.level_sizes)} levels")
        if len(self.level_sizes) > len(LEVEL_LETTERS):
            raise DataError(f"at most {len(LEVEL_LETTERS)} levels are supported, got {len(self.level_sizes)}")
        if len(self.codes) and ((self.codes < 0).any() or (self.codes >= np.asarray(self.level_sizes)).any()):
            raise DataError(f"codes fall outside the level sizes {list(self.level_sizes)}")
        if self.item_ids is not None and len(self.item_ids) != len(self.codes):
            raise DataError(f"{len(self.item_ids)} item ids for {len(self.codes)} codes")
        self._index = {tuple(row): i for i, row in enumerate(self.codes.tolist())}
        if len(self._index) != len(self.codes):
            raise DataError(f"semantic IDs are not unique ({len(self._index)} distinct for {len(self.codes)} "
                            "items); fit with the de-dup level")

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    def codes_of(self, item: int) -> tuple[int, ...]:
        return tuple(int(c) for c in self.codes[item])

    def tokens_of(self, item: int) -> list[str]:
        """The item's SID as a token list, markers included (what the LLM sees, one token each)."""
        return [SID_BEGIN, *(code_token(lv, int(c)) for lv, c in enumerate(self.codes[item])), SID_END]

    def sid(self, item: int) -> str:
        return format_sid(self.codes[item])

    def sids(self, items: Iterable[int] | None = None) -> list[str]:
        rows = self.codes if items is None else self.codes[np.asarray(list(items), dtype=np.int64)]
        return [format_sid(r) for r in rows]

    def item_index(self, sid: str | Sequence[int]) -> int:
        """The item a SID (string or code tuple) names; ``SIDParseError`` when it names none."""
        codes = parse_sid(sid) if isinstance(sid, str) else tuple(int(c) for c in sid)
        try:
            return self._index[codes]
        except KeyError:
            raise SIDParseError(f"no item has the SID {format_sid(codes) if codes else sid!r}") from None

    def tokens(self) -> list[str]:
        """Every token the SIDs use: the two markers, then each level's code tokens."""
        return [SID_BEGIN, SID_END] + [code_token(level, c) for level, size in enumerate(self.level_sizes)
                                       for c in range(size)]

    def prefix_ngrams(self, num_buckets: int = 1 << 20, salt: int = 0) -> np.ndarray:
        """Hashed ids of every code prefix per item, for the rankers (see ``tokenizer.ngram``)."""
        from tokenizer.ngram import prefix_ngram_ids

        return prefix_ngram_ids(self.codes, num_buckets=num_buckets, salt=salt)

    # -- files -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """``codes.npy``, ``sid_vocab.json`` and a human-readable ``sids.tsv`` (each written atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "codes.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.codes)
        write_json_atomic(directory / "sid_vocab.json", {"level_sizes": list(self.level_sizes),
                                                         "num_items": len(self)})
        ids = self.item_ids or [str(i) for i in range(len(self))]
        with atomic_path(directory / "sids.tsv") as tmp:
            tmp.write_text("item_index\titem_id\tsid\n" + "".join(
                f"{i}\t{item_id}\t{sid}\n" for i, (item_id, sid) in enumerate(zip(ids, self.sids(), strict=True))),
                encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> SemanticIDs:
        """Load what ``save`` (or ``gr2 tokenizer fit``) wrote; a missing or corrupt file is a DataError."""
        directory = Path(directory)
        vocab_path, codes_path, tsv = directory / "sid_vocab.json", directory / "codes.npy", directory / "sids.tsv"
        for p in (vocab_path, codes_path):
            if not p.is_file():
                raise DataError("not a semantic-ID directory (missing file); run `gr2 tokenizer fit` first", p)
        try:
            vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
            level_sizes = tuple(int(s) for s in vocab["level_sizes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"corrupt SID vocabulary file ({exc})", vocab_path) from None
        try:
            codes = np.load(codes_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"corrupt codes file ({exc})", codes_path) from None
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise DataError(f"corrupt codes file: expected a 2-D integer array, got {codes.dtype} {codes.shape}",
                            codes_path)
        item_ids = None
        if tsv.is_file():
            lines = tsv.read_text(encoding="utf-8").splitlines()[1:]
            item_ids = [line.split("\t")[1] for line in lines if line]
            if len(item_ids) != len(codes):
                item_ids = None
        try:
            return cls(codes, level_sizes, item_ids)
        except DataError as exc:
            raise DataError(exc.message, directory) from None
