"""An offline teacher that ranks by text overlap, co-occurrence and the pre-rank order.

It lets the whole SFT stage run with no LLM at hand. Its rationales are short and templated,
built only from evidence it really used (shared title words, co-occurrence with a history item),
and every trace it writes says in its provenance that it is heuristic, so nobody mistakes it for
an LLM's reasoning. Rejection mode samples rankings from a Plackett-Luce distribution over its
scores (Gumbel noise at ``temperature``).

With ``promote`` > 0 the teacher moves only its ``promote`` best candidates to the top and keeps the
rest in pre-rank order: it changes the ranking where it has evidence and trusts the pre-ranker
elsewhere. Such answers are also far easier for a small student to write as valid permutations.

Co-occurrence is the only evidence it learns from train data, so it is cross-fitted like the train-split
candidates (``CrossFitCooccurrence``): a train example's target, and the user's own step into it, sit in
``train_sequences()``; evidence counted from them would not exist at test time, and the traces would teach
the student to trust it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from data.candidates import CROSSFIT_SEED, fold_of_users, fold_train_sequences
from data.cooccurrence import cooccurrence_matrix
from data.schema import PreparedDataset
from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.rerank_format import format_answer, sanitize_item_text
from gr2.teachers.base import TeacherReply

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and the of for to in on with by at from is it its this that game games edition the".split())


def title_words(title: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(title.lower()) if w not in _STOP and len(w) > 1 and not w.isdigit())


@dataclass
class HeuristicTeacherConfig:
    overlap_weight: float = 1.0
    cooccurrence_weight: float = 1.0
    prior_weight: float = 0.5  # trust in the pre-ranker's order
    temperature: float = 0.3  # Gumbel noise scale for sampled rankings (rejection mode)
    promote: int = 0  # > 0: move only the top ``promote`` picks up, the rest keep pre-rank order
    title_chars: int = 60  # titles are cut to this length in rationales


class CrossFitCooccurrence:
    """Co-occurrence matrices in which no train example sees its own user's target (others' data stays in).

    Train-split examples of users in fold f read a matrix built from ``fold_train_sequences`` (fold f's users
    without their last ``2 + train_cuts`` items: the sequences the candidates' fold-f model learnt from);
    valid / test (and split-less) examples read the one built from all ``train_sequences()``, which is what
    exists at inference. With no folds every example reads ``full``.
    """

    def __init__(self, full: sp.spmatrix, per_fold: Sequence[sp.spmatrix] = (), fold_of: np.ndarray | None = None):
        if per_fold and (fold_of is None or int(fold_of.max(initial=-1)) >= len(per_fold)):
            raise ValueError("every user's fold needs a matrix: give fold_of with values below len(per_fold)")
        self.full = full.tocsr()
        self.per_fold = [m.tocsr() for m in per_fold]
        self.fold_of = fold_of

    @classmethod
    def build(cls, ds: PreparedDataset, folds: int, train_cuts: int,
              seed: int = CROSSFIT_SEED) -> CrossFitCooccurrence:
        """The full matrix plus one per fold, held out exactly as ``gr2 rank candidates`` held out its users."""
        fold_of = fold_of_users(ds.num_users, folds, seed)
        per_fold = [cooccurrence_matrix(fold_train_sequences(ds.sequences, fold_of == f, train_cuts), ds.num_items)
                    for f in range(folds)]
        return cls(cooccurrence_matrix(ds.train_sequences(), ds.num_items), per_fold, fold_of)

    def fold(self, example: RerankExample) -> int | None:
        """The fold whose matrix scores ``example``; None for the full matrix."""
        if example.split != "train" or not self.per_fold:
            return None
        return int(self.fold_of[example.user])

    def matrix(self, example: RerankExample) -> sp.csr_matrix:
        fold = self.fold(example)
        return self.full if fold is None else self.per_fold[fold]

    def describe(self, example: RerankExample) -> str:
        """For the trace's provenance: which data the co-occurrence evidence was counted on."""
        fold = self.fold(example)
        if fold is None:
            return "all train sequences" if self.per_fold else "as given (not cross-fitted)"
        return f"cross-fitted fold {fold} of {len(self.per_fold)}"


class HeuristicTeacher:
    name = "heuristic"

    def __init__(self, catalog: ItemCatalog, cooccurrence: sp.spmatrix | CrossFitCooccurrence,
                 config: HeuristicTeacherConfig | None = None):
        """``cooccurrence``: a ``CrossFitCooccurrence`` for train traces; a plain matrix is used for every example."""
        self.catalog = catalog
        self.cooccurrence = (cooccurrence if isinstance(cooccurrence, CrossFitCooccurrence)
                             else CrossFitCooccurrence(cooccurrence))
        self.cooc = self.cooccurrence.full  # the inference-time matrix
        self.config = config or HeuristicTeacherConfig()
        self._words = [title_words(t) for t in catalog.titles]

    def evidence_matrix(self, example: RerankExample) -> tuple[np.ndarray, np.ndarray]:
        """(overlap, co-occurrence) between each history item (rows) and each candidate (columns)."""
        h, c = example.history, example.candidates
        overlap = np.zeros((len(h), len(c)))
        for i, hi in enumerate(h):
            for j, cj in enumerate(c):
                union = self._words[hi] | self._words[cj]
                overlap[i, j] = len(self._words[hi] & self._words[cj]) / len(union) if union else 0.0
        matrix = self.cooccurrence.matrix(example)
        cooc = np.asarray(matrix[h][:, c].todense()) if h else np.zeros((0, len(c)))
        if cooc.size and cooc.max() > 0:
            cooc = cooc / cooc.max()
        return overlap, cooc

    def scores(self, example: RerankExample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        overlap, cooc = self.evidence_matrix(example)
        recency = 0.8 ** np.arange(len(example.history))[::-1][:, None] if example.history else np.ones((0, 1))
        o = (overlap * recency).max(axis=0) if len(example.history) else np.zeros(len(example.candidates))
        co = (cooc * recency).max(axis=0) if len(example.history) else np.zeros(len(example.candidates))
        prior = 1.0 / np.log2(np.arange(len(example.candidates)) + 2)
        return cfg.overlap_weight * o + cfg.cooccurrence_weight * co + cfg.prior_weight * prior, overlap, cooc

    def reply(self, example: RerankExample, messages: list[dict[str, str]], reveal_target: bool,
              rng: np.random.Generator) -> TeacherReply:
        score, overlap, cooc = self.scores(example)
        noisy = score + self.config.temperature * rng.gumbel(size=len(score))
        order = [int(i) for i in np.argsort(-noisy, kind="stable")]
        if reveal_target and example.target_index is not None:
            order.remove(example.target_index)
            order.insert(0, example.target_index)
        if self.config.promote > 0:
            picks = order[: self.config.promote]
            order = picks + [i for i in range(len(example.candidates)) if i not in picks]
        reasoning, evidence = self.rationale(example, order, overlap, cooc)
        keys = self.catalog.answer_keys(example)
        text = format_answer(reasoning, [keys[i] for i in order])
        provenance = {"teacher": "heuristic", "heuristic": True, "revealed_target": reveal_target,
                      "config": asdict(self.config), "cooccurrence": self.cooccurrence.describe(example)}
        return TeacherReply(text, provenance, evidence)

    def rationale(self, example: RerankExample, order: list[int], overlap: np.ndarray,
                  cooc: np.ndarray) -> tuple[str, list[int]]:
        """Two or three templated sentences citing the history items that support the top picks."""
        titles = self.catalog.titles
        short = lambda i: sanitize_item_text(titles[i], max_chars=self.config.title_chars)  # noqa: E731
        sentences, evidence = [], []
        if example.history:
            recent = ", ".join(short(i) for i in example.history[-2:])
            sentences.append(f"Most recently the user chose {recent}.")
        for rank, j in enumerate(order[:2]):
            cand = short(example.candidates[j])
            lead = "The best fit is" if rank == 0 else "Next comes"
            if len(example.history) and overlap[:, j].max() > 0:
                h = int(overlap[:, j].argmax())
                shared = sorted(self._words[example.history[h]] & self._words[example.candidates[j]])[:3]
                sentences.append(f"{lead} {cand}: it shares '{' '.join(shared)}' with {short(example.history[h])}.")
                evidence.append(h)
            elif len(example.history) and cooc[:, j].max() > 0:
                h = int(cooc[:, j].argmax())
                sentences.append(f"{lead} {cand}: users often pick it alongside {short(example.history[h])}.")
                evidence.append(h)
            else:
                sentences.append(f"{lead} {cand}, placed high by the current ranking.")
        return " ".join(sentences), sorted(set(evidence))
