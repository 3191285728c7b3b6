"""Causal self-attention behind one switch: ``naive`` | ``sdpa`` | ``flash_attn`` | ``triton``.

Every backend computes the same thing: softmax attention of each position over itself and the positions
before it, for right-padded batches ``(batch, heads, length, head_dim)`` with per-sequence ``lengths``.
Because sequences are right-padded, a causal mask alone is exact for the real positions (they only ever see
real positions); padded positions produce values nobody reads. The jagged backends (``flash_attn``,
``triton``) pack the real positions first and never touch padding.

- ``naive``: explicit matmul + mask + softmax: the reference the others are tested against.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``: PyTorch's fused flash /
  memory-efficient kernels (on CPU too).
- ``flash_attn``: the flash-attn package's ``flash_attn_varlen_func`` on CUDA (bf16 inside).
- ``triton``: our Triton jagged kernel (``rankers.triton_attention``); on CPU only in the interpreter.
"""

from __future__ import annotations

import importlib.util
import math
import os

import torch
import torch.nn.functional as F

from rankers.errors import ConfigError

BACKENDS = ("naive", "sdpa", "flash_attn", "triton")


def _why_unavailable(name: str, device: torch.device) -> str | None:
    """None when ``name`` can run on ``device``; otherwise the reason."""
    if name in ("naive", "sdpa"):
        return None
    if name == "flash_attn":
        if device.type != "cuda":
            return "flash_attn needs a CUDA device"
        if importlib.util.find_spec("flash_attn") is None:
            return "the flash-attn package is not installed"
        return None
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "the triton package is not installed"
        if device.type == "cuda":
            return None
        if os.environ.get("TRITON_INTERPRET") == "1":
            return None
        return "triton needs a CUDA device (or TRITON_INTERPRET=1, set before triton is imported, on CPU)"
    return f"unknown attention backend {name!r}"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    device = torch.device(device)
    return [b for b in BACKENDS if _why_unavailable(b, device) is None]


def check_backend(name: str, device: torch.device | str = "cpu") -> str:
    """Return ``name`` if it can run on ``device``; otherwise a ConfigError naming the available ones."""
    device = torch.device(device)
    if name not in BACKENDS:
        raise ConfigError(f"unknown attention backend {name!r}; known: {list(BACKENDS)}, "
                          f"available on {device.type}: {available_backends(device)}")
    why = _why_unavailable(name, device)
    if why:
        raise ConfigError(f"attention backend {name!r} is not available on this device ({why}); "
                          f"available: {available_backends(device)}")
    return name


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The reference: materialise the (length x length) score matrix, mask the future, softmax."""
    length = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def pack(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch, heads, length, dim) right-padded -> (total, heads, dim), the valid mask, cu_seqlens (int32)."""
    length = x.shape[2]
    valid = torch.arange(length, device=x.device)[None, :] < lengths[:, None]
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=x.device)
    cu[1:] = torch.cumsum(lengths, 0)
    return x.transpose(1, 2)[valid], valid, cu


def unpack(packed: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack``: padding positions become zeros."""
    batch, length = valid.shape
    out = packed.new_zeros(batch, length, *packed.shape[1:])
    out[valid] = packed
    return out.transpose(1, 2)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor,
                     backend: str = "sdpa") -> torch.Tensor:
    """Causal attention of right-padded ``(batch, heads, length, head_dim)`` tensors with the chosen backend."""
    if backend == "naive":
        return naive_attention(q, k, v)
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if backend not in ("flash_attn", "triton"):
        check_backend(backend, q.device)
    lengths = lengths.to(device=q.device, dtype=torch.int64)
    max_len = int(lengths.max())
    qp, valid, cu = pack(q, lengths)
    kp, _, _ = pack(k, lengths)
    vp, _, _ = pack(v, lengths)
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        out = flash_attn_varlen_func(qp.to(dtype), kp.to(dtype), vp.to(dtype), cu, cu, max_len, max_len,
                                     causal=True).to(q.dtype)
    else:
        from rankers.triton_attention import jagged_causal_attention

        out = jagged_causal_attention(qp, kp, vp, cu, max_len)
    return unpack(out, valid)
