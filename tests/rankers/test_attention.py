"""Every attention backend against the naive reference: values and gradients, on real positions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rankers.attention import available_backends, causal_attention, check_backend, naive_attention, pack, unpack
from rankers.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _inputs(batch=4, heads=2, length=23, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(batch, heads, length, dim, generator=g, requires_grad=True) for _ in range(3)]
    lengths = torch.tensor([length, 1, 9, 17][:batch])
    return qkv, lengths


def _valid(lengths, length):
    return (torch.arange(length)[None, :] < lengths[:, None])[:, None, :, None].float()


def _run(backend, qkv, lengths, grad):
    for x in qkv:
        x.grad = None
    out = causal_attention(*qkv, lengths, backend)
    mask = _valid(lengths, out.shape[2])
    (out * mask * grad).sum().backward()
    return out * mask, [x.grad.clone() for x in qkv]


def test_naive_is_causal_softmax():
    (q, k, v), _ = _inputs(batch=1, length=5)
    out = naive_attention(q, k, v)
    # The first position can only attend to itself; the last one equals full attention over all positions.
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0])
    full = torch.softmax(q[:, :, -1:] @ k.transpose(-2, -1) / 4.0, -1) @ v
    torch.testing.assert_close(out[:, :, -1:], full)


def test_sdpa_matches_naive_values_and_gradients():
    qkv, lengths = _inputs()
    grad = torch.randn(4, 2, 23, 16)
    ref, ref_grads = _run("naive", qkv, lengths, grad)
    out, grads = _run("sdpa", qkv, lengths, grad)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_pack_unpack_roundtrip():
    x = torch.randn(3, 2, 6, 4)
    lengths = torch.tensor([6, 2, 4])
    packed, valid, cu = pack(x, lengths)
    assert packed.shape == (12, 2, 4) and cu.tolist() == [0, 6, 8, 12]
    back = unpack(packed, valid)
    torch.testing.assert_close(back * _valid(lengths, 6), x * _valid(lengths, 6))


def test_unknown_and_unavailable_backends_name_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown attention backend 'flash'.*available on cpu: \['naive', 'sdpa'"):
        check_backend("flash", "cpu")
    with pytest.raises(ConfigError, match=r"'flash_attn' is not available on this device.*available: \["):
        check_backend("flash_attn", "cpu")
    assert {"naive", "sdpa"} <= set(available_backends("cpu"))
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        assert "triton" not in available_backends("cpu")
        with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
            check_backend("triton", "cpu")


TRITON_CHECK = r"""
import json, os, torch
assert os.environ["TRITON_INTERPRET"] == "1"
from rankers.attention import causal_attention, available_backends
from rankers.sasrec import SASRec, SASRecConfig
assert "triton" in available_backends("cpu")
torch.manual_seed(0)
errors = {}
for (b, h, L, d, lengths) in [(3, 2, 37, 8, [37, 5, 20]), (2, 1, 16, 32, [16, 1])]:
    qkv = [torch.randn(b, h, L, d, requires_grad=True) for _ in range(3)]
    lengths = torch.tensor(lengths)
    mask = (torch.arange(L)[None, :] < lengths[:, None])[:, None, :, None].float()
    grad = torch.randn(b, h, L, d)
    res = {}
    for backend in ("naive", "triton"):
        for x in qkv: x.grad = None
        out = causal_attention(*qkv, lengths, backend) * mask
        (out * grad).sum().backward()
        res[backend] = [out.detach()] + [x.grad.clone() for x in qkv]
    for name, a, r in zip(["out", "dq", "dk", "dv"], res["triton"], res["naive"]):
        errors[name] = max(errors.get(name, 0.0), (a - r).abs().max().item())
# A whole SASRec loss + gradients with the Triton backend vs sdpa, same weights.
cfg = SASRecConfig(hidden=16, heads=2, blocks=1, max_len=12, dropout=0.0, attention="sdpa")
model = SASRec(30, cfg)
items = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 9, 10, 11, 12]])
targets = torch.tensor([[3, 4, 5, -1, -1, -1], [7, 8, 9, 10, 11, 12]])
lengths = torch.tensor([4, 6])
grads = {}
for backend in ("sdpa", "triton"):
    model.set_backend(backend)
    model.zero_grad()
    loss = model.loss(items, targets, lengths)
    loss.backward()
    grads[backend] = (loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
errors["sasrec_loss"] = abs(grads["sdpa"][0] - grads["triton"][0])
errors["sasrec_grad"] = (grads["sdpa"][1] - grads["triton"][1]).abs().max().item()
print(json.dumps(errors))
"""


@pytest.mark.slow
def test_triton_kernel_matches_naive_in_the_interpreter():
    """Forward and backward of the Triton jagged kernel, run by Triton's CPU interpreter in a fresh process."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", TRITON_CHECK], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    print("triton interpreter max abs errors:", errors)
    assert set(errors) == {"out", "dq", "dk", "dv", "sasrec_loss", "sasrec_grad"}
    assert max(errors.values()) < 1e-3, errors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["triton", "flash_attn"])
def test_gpu_backends_match_naive(backend):
    if backend not in available_backends("cuda"):
        pytest.skip(f"{backend} not available")
    qkv, lengths = _inputs(batch=4, heads=2, length=130, dim=32)
    qkv = [x.detach().cuda().requires_grad_() for x in qkv]
    lengths = torch.tensor([130, 1, 64, 77]).cuda()
    grad = torch.randn(4, 2, 130, 32, device="cuda")
    ref, ref_grads = _run("naive", qkv, lengths, grad)
    out, grads = _run(backend, qkv, lengths, grad)
    tol = 2e-2 if backend == "flash_attn" else 5e-3  # bf16 inside flash-attn; tf32 dots in Triton
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
