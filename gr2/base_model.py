"""Base language models for the reranker: ``tiny``, ``gemma3-270m`` or any local Hugging Face causal LM.

``tiny`` is a Qwen3-architecture model of a few million parameters with a byte-level BPE
tokenizer trained on the dataset's own item text, so the whole three-stage pipeline runs on two
CPU cores. It has the same architecture and chat format as the real Qwen3 models the GPU configs
use, so every later stage (SFT, RL, vLLM serving) exercises the same code paths. Head size 32 is
one that vLLM's CPU attention backend supports. ``gemma3-270m`` is a pretrained LM that an optional
package ships (``gr2.gemma``), trained with LoRA.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gr2.gemma import GEMMA_BASE
from gr2.rerank_format import EMPHASIS_CLOSE, EMPHASIS_OPEN, SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN

ADAPTER_CONFIG = "adapter_config.json"  # what makes a directory a PEFT adapter
PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
# Reasoning and emphasis tags are whole tokens but not "special": decoding with
# skip_special_tokens=True (vLLM's default) must keep them in the answer text, as Qwen3 does.
TAG_TOKENS = [THINK_OPEN, THINK_CLOSE, EMPHASIS_OPEN, EMPHASIS_CLOSE]

# ChatML, as Qwen uses: the tiny model speaks the same format as the real ones.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Text the tokenizer should compress well besides item titles: the prompt scaffolding and JSON.
SCAFFOLD_TEXT = [
    SYSTEM_PROMPT,
    "User history (oldest first):\nCandidates (10, in the current ranking's order):\nRank all candidates.",
    '{"recommendations": ["', '", "', '"]}',
    "The user recently liked similar items, so this candidate ranks first because it shares genre and series.",
]


@dataclass
class TinyModelConfig:
    """Sizes of the ``tiny`` model: about 3.5M parameters with a 5k vocabulary."""

    vocab_size: int = 4096  # BPE merges learned on item text (SID tokens are added later)
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 512
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    seed: int = 0


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """A byte-level BPE tokenizer (any text encodes) with ChatML and the task's tags as special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*texts, *SCAFFOLD_TEXT], trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
    )
    hf.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    hf.chat_template = CHAT_TEMPLATE
    hf.padding_side = "left"  # generation batches
    return hf


def build_tiny_model(texts: Iterable[str], config: TinyModelConfig | None = None):
    """A randomly initialised tiny Qwen3 and its tokenizer trained on ``texts`` (stage 0 pretrains it)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    config = config or TinyModelConfig()
    tokenizer = train_bpe_tokenizer(texts, config.vocab_size)
    torch.manual_seed(config.seed)
    model_config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=config.rope_theta,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    return model, tokenizer


def load_base_model(spec: str | Path, texts: Iterable[str] | None = None, config: TinyModelConfig | None = None):
    """``tiny`` (needs ``texts`` to train its tokenizer), ``gemma3-270m`` (converted from its package on first
    use, ``gr2.gemma``), a local HF causal-LM directory, or a PEFT adapter directory (loaded on its base and
    merged: inference and further training see one plain model)."""
    if str(spec) == "tiny":
        if texts is None:
            raise ValueError("the tiny base model needs item texts to train its tokenizer")
        return build_tiny_model(texts, config)
    if str(spec) == GEMMA_BASE:
        from gr2.gemma import ensure_gemma

        spec = ensure_gemma()
    path = Path(spec).expanduser()
    if (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file():
        return load_adapter(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"base model {str(spec)!r} is neither 'tiny', {GEMMA_BASE!r} nor a local Hugging Face model or PEFT "
            f"adapter directory (no config.json in {path}); models are never downloaded from a hub"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def adapter_base(adapter_dir: str | Path) -> Path:
    """The model directory a PEFT adapter was trained on (``base_model_name_or_path``), checked to exist."""
    adapter_dir = Path(adapter_dir)
    base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        raise FileNotFoundError(f"LoRA adapter {adapter_dir}: its base model {base!r} is not a local model directory")
    return Path(base)


def load_adapter(adapter_dir: str | Path, merge: bool = True, trainable: bool = False):
    """A PEFT adapter on its base model: merged into a plain model (``merge``), or as a ``PeftModel``
    (``trainable`` to train it further). The tokenizer saved beside the adapter wins over the base's."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    base, tokenizer = load_base_model(adapter_base(adapter_dir))
    if (adapter_dir / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=trainable)
    return (model.merge_and_unload() if merge else model), tokenizer
