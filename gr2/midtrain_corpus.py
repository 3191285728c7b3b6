"""Stage 1's multi-task corpus (OneRec-Think style itemic alignment), from training data only.

Four tasks tie semantic IDs to language: the next item's SID from a history of SIDs (collaborative
signal), an item's text from its SID, its SID from its text, and plain item text (keeps the
language ability the SID tasks would otherwise erode). Two more teach the answer a reranker writes:

- ``pick_next``: the rerank task with a known answer. A rerank prompt whose shuffled candidates hold
  the true next item among popularity-sampled others, answered in the rerank format with that item
  first and the rest in listed order: the answer JSON is made by copying each candidate's SID once.
- ``copy_sids``: a window of 2..K items of a training sequence, repeated: in-context copying in its
  simplest form. Lists of varying length need content-based (induction) copying; a fixed length
  would let a relative-position head do it, which does not transfer to reranking.

Both weigh 0 by default.

- ``sid_sequence`` (``sequences`` passes, outside the weighted mixture): each training sequence whole
  (its most recent ``sequence_length`` items) as one assistant turn of SIDs, so the next-SID loss covers
  every position of every sequence, as SASRec trains (``gr2.sid_lm``). This is what makes the stage-1
  model a recommender in its own right; one pass is one epoch over the training interactions.

The collaborative tasks (next-SID, sequences, pick_next, copy) stop ``holdout_last`` items before the
end of each training sequence: the pipeline sets it to the ranker's ``train_cuts``, so the targets of
the train-split rerank examples (``seq[-3]``, ...) are never stage-1 training data, and the SFT and RL
students cannot learn to trust a memorised answer they will not have at test time.

``pick_next`` and ``sid_sequence`` examples are long beside the short SID tasks, so mixtures with them
train faster with ``training.sampling: group_by_length``. Examples are conversational
prompt/completion pairs, so TRL's ``SFTTrainer`` computes the loss on the completion alone and the
chat format matches stages 2 and 3. Histories come from ``train_sequences()``: the valid and test
targets never appear, so stage-1 training cannot leak the evaluation answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from data.schema import PreparedDataset
from gr2.rerank_format import PromptItem, build_messages, format_answer, sanitize_item_text
from gr2.sid_lm import sequence_conversation

TASKS = ("next_sid", "sid_to_text", "text_to_sid", "item_text", "pick_next", "copy_sids")
SEQUENCE_TASK = "sid_sequence"


@dataclass
class MixtureConfig:
    """Share of each task among ``num_examples`` (weights are normalised)."""

    next_sid: float = 0.4
    sid_to_text: float = 0.2
    text_to_sid: float = 0.2
    item_text: float = 0.2
    pick_next: float = 0.0
    copy_sids: float = 0.0
    num_examples: int = 20_000
    max_history: int = 20  # most recent items shown for next-SID prediction
    pick_history: int = 10  # history items in a pick_next prompt (pipelines set the recipe's max_history)
    pick_candidates: int = 10  # candidates in a pick_next prompt (pipelines set the ranker's K)
    min_history: int = 1
    seed: int = 0
    sequences: int = 0  # passes of sid_sequence over every training sequence (on top of num_examples)
    sequence_length: int = 50  # most recent items of a sequence in one sid_sequence example
    holdout_last: int = 0  # items cut from the end of every training sequence (the train-split targets)
    max_title_chars: int = 200  # titles in text_to_sid and pick_next prompts (pipelines set the recipe's)
    max_text_chars: int = 300  # item text in sid_to_text and item_text answers

    def weights(self) -> np.ndarray:
        w = np.asarray([getattr(self, t) for t in TASKS], dtype=float)
        if (w < 0).any() or (w.sum() <= 0 and self.num_examples):
            given = dict(zip(TASKS, w.tolist(), strict=True))
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {given}")
        return w / w.sum()


def _conversation(user: str | list[dict], assistant: str, task: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": user}] if isinstance(user, str) else user,
        "completion": [{"role": "assistant", "content": assistant}],
        "task": task,
    }


def build_midtrain_examples(ds: PreparedDataset, item_sids: Sequence[str], config: MixtureConfig) -> list[dict]:
    """Sample ``num_examples`` prompt/completion conversations in the configured task mixture."""
    if len(item_sids) != ds.num_items:
        raise ValueError(f"got {len(item_sids)} SIDs for {ds.num_items} items")
    rng = np.random.default_rng(config.seed)
    texts = [sanitize_item_text(t, max_chars=config.max_text_chars) for t in ds.item_texts()]
    titles = [sanitize_item_text(t, max_chars=config.max_title_chars) for t in ds.items["title"].tolist()]
    train = [s for s in training_sequences(ds, config.holdout_last) if len(s) > config.min_history]
    if not train:
        raise ValueError("no training sequence is long enough for next-SID examples")
    counts = rng.multinomial(config.num_examples, config.weights()) if config.num_examples else [0] * len(TASKS)
    examples: list[dict] = []
    for _ in range(config.sequences):  # every training sequence, whole: a next-SID loss at every position
        for seq in train:
            sids = [item_sids[i] for i in seq[-config.sequence_length:]]
            examples.append({**sequence_conversation(sids), "task": SEQUENCE_TASK})

    for _ in range(counts[0]):  # history -> next SID, at a random cut of a random training sequence
        seq = train[rng.integers(len(train))]
        cut = int(rng.integers(config.min_history, len(seq)))
        history = seq[max(0, cut - config.max_history) : cut]
        prompt = "A user interacted with these items, oldest first: " + "".join(item_sids[i] for i in history)
        examples.append(_conversation(prompt + "\nWhich item comes next?", item_sids[seq[cut]], "next_sid"))
    for i in rng.integers(ds.num_items, size=counts[1]):
        examples.append(_conversation(f"What is item {item_sids[i]}?", texts[i], "sid_to_text"))
    for i in rng.integers(ds.num_items, size=counts[2]):
        examples.append(_conversation(f"Which item is this: {titles[i]}?", item_sids[i], "text_to_sid"))
    for i in rng.integers(ds.num_items, size=counts[3]):
        examples.append(_conversation("Describe an item from the catalogue.", texts[i], "item_text"))
    examples += _pick_next_examples(train, item_sids, titles, counts[4], config, rng)
    for _ in range(counts[5]):  # repeat a window of 2..pick_candidates items of a training sequence
        seq = train[rng.integers(len(train))]
        size = int(rng.integers(2, min(config.pick_candidates, len(seq)) + 1))
        start = int(rng.integers(0, len(seq) - size + 1))
        listed = "".join(item_sids[i] for i in seq[start : start + size])
        examples.append(_conversation(f"Repeat these items exactly: {listed}", listed, "copy_sids"))
    order = rng.permutation(len(examples))
    return [examples[i] for i in order]


def training_sequences(ds: PreparedDataset, holdout_last: int = 0) -> list[np.ndarray]:
    """``ds.train_sequences()`` less each sequence's last ``holdout_last`` items (at least one item stays)."""
    train = ds.train_sequences()
    return [s[:max(1, len(s) - holdout_last)] for s in train] if holdout_last else train


def _pick_next_examples(train: list[np.ndarray], item_sids: Sequence[str], titles: list[str], count: int,
                        config: MixtureConfig, rng: np.random.Generator) -> list[dict]:
    """Rerank prompts with a known answer: the true next item first, the other candidates in listed order."""
    if count == 0:
        return []
    num_items = len(item_sids)
    popularity = np.bincount(np.concatenate(train), minlength=num_items).astype(float) + 1.0
    popularity /= popularity.sum()
    k = min(config.pick_candidates, num_items)
    examples = []
    for _ in range(count):
        seq = train[rng.integers(len(train))]
        cut = int(rng.integers(config.min_history, len(seq)))
        history, target = seq[max(0, cut - config.pick_history) : cut].tolist(), int(seq[cut])
        others: list[int] = []
        while len(others) < k - 1:  # distinct, popularity-sampled, not the target (may repeat history items)
            item = int(rng.choice(num_items, p=popularity))
            if item != target and item not in others:
                others.append(item)
        candidates = list(others)
        candidates.insert(int(rng.integers(k)), target)
        messages = build_messages([PromptItem(item_sids[i], titles[i]) for i in history],
                                  [PromptItem(item_sids[i], titles[i]) for i in candidates])
        answer = format_answer("", [item_sids[target]] + [item_sids[i] for i in others])
        examples.append(_conversation(messages, answer, "pick_next"))
    return examples


def build_midtrain_dataset(ds: PreparedDataset, item_sids: Sequence[str], config: MixtureConfig):
    """The corpus as a ``datasets.Dataset`` with prompt, completion and task columns."""
    from datasets import Dataset

    dataset = Dataset.from_list(build_midtrain_examples(ds, item_sids, config))
    dataset.info.description = f"gr2 stage-1 corpus {asdict(config)}"
    return dataset
