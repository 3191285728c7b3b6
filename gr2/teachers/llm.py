"""LLM teachers: any OpenAI-compatible chat endpoint (a ``vllm serve``, a hosted API) or a local model.

Both see exactly the rerank prompt the student will see (plus, in targeted mode, a note naming the
truth), sample at ``temperature`` so rejection sampling gets different answers, and record in the
provenance which model answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gr2.rerank_data import ItemCatalog, RerankExample
from gr2.teachers.base import TeacherReply, join_reasoning, targeted_messages


@dataclass
class LLMTeacherConfig:
    temperature: float = 0.8
    max_tokens: int = 512
    timeout_s: float = 120.0


class OpenAITeacher:
    name = "openai"

    def __init__(self, catalog: ItemCatalog, base_url: str, model: str, api_key: str | None = None,
                 config: LLMTeacherConfig | None = None):
        from openai import OpenAI

        self.catalog = catalog
        self.model = model
        self.base_url = base_url
        self.config = config or LLMTeacherConfig()
        # a local server accepts any key; a hosted one reads OPENAI_API_KEY as usual
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=self.config.timeout_s,
                             max_retries=2)

    def reply(self, example: RerankExample, messages: list[dict[str, str]], reveal_target: bool,
              rng: np.random.Generator) -> TeacherReply:
        if reveal_target:
            messages = targeted_messages(messages, self.catalog.prompt_items([example.target])[0])
        seed = int(rng.integers(2**31 - 1))
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, temperature=self.config.temperature,
            max_tokens=self.config.max_tokens, seed=seed,
        )
        message = response.choices[0].message
        text = join_reasoning(message.content, getattr(message, "reasoning_content", None)
                              or getattr(message, "reasoning", None))
        provenance = {"teacher": "openai", "heuristic": False, "model": self.model, "endpoint": self.base_url,
                      "temperature": self.config.temperature, "seed": seed,
                      "finish_reason": response.choices[0].finish_reason}
        return TeacherReply(text, provenance)


class HFTeacher:
    """A local Hugging Face chat model (e.g. a larger Qwen3 on a GPU box), sampled with ``generate``."""

    name = "hf"

    def __init__(self, catalog: ItemCatalog, model_dir: str | Path, config: LLMTeacherConfig | None = None):
        from gr2.base_model import load_base_model

        self.catalog = catalog
        self.model_dir = str(model_dir)
        self.config = config or LLMTeacherConfig()
        self.model, self.tokenizer = load_base_model(model_dir)
        self.model.eval()

    def reply(self, example: RerankExample, messages: list[dict[str, str]], reveal_target: bool,
              rng: np.random.Generator) -> TeacherReply:
        import torch

        if reveal_target:
            messages = targeted_messages(messages, self.catalog.prompt_items([example.target])[0])
        seed = int(rng.integers(2**31 - 1))
        torch.manual_seed(seed)
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True).to(self.model.device)
        with torch.no_grad():
            out = self.model.generate(**ids, do_sample=True, temperature=self.config.temperature,
                                      max_new_tokens=self.config.max_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id)
        text = self.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        provenance = {"teacher": "hf", "heuristic": False, "model": self.model_dir,
                      "temperature": self.config.temperature, "seed": seed}
        return TeacherReply(text, provenance)
