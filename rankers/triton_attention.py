"""Jagged causal softmax attention in Triton (forward and backward), in the spirit of HSTU's jagged kernels.

Sequences are packed without padding: ``q, k, v`` are ``(total_tokens, heads, head_dim)`` and
``cu_seqlens`` (``batch + 1`` int32 offsets) says where each sequence starts, as in flash-attn's varlen API.
No work is spent on padding, which is what makes jagged batches (most users have short histories) cheap.

The forward pass is FlashAttention-2 style: one program per (query block, sequence, head), an online
softmax over the key blocks left of the diagonal, and the row log-sum-exp kept for the backward pass. The
backward pass recomputes the probabilities block by block: one kernel accumulates dK/dV per key block
(looping over the query blocks below the diagonal), another accumulates dQ per query block, so no atomics
are needed. On CPU it runs in Triton's interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is
imported), which is how the tests check it against the naive reference.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _fwd_kernel(Q, K, V, Out, LSE, CU, sm_scale, stride_t, stride_h,
                H: tl.constexpr, D: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    start = tl.load(CU + b)
    seqlen = tl.load(CU + b + 1) - start
    m0 = pid_m * BLOCK_M
    if m0 < seqlen:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        mask_m = offs_m < seqlen
        mask_d = offs_d < D
        q = tl.load(Q + (start + offs_m)[:, None] * stride_t + h * stride_h + offs_d[None, :],
                    mask=mask_m[:, None] & mask_d[None, :], other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        hi = tl.minimum(m0 + BLOCK_M, seqlen)
        for n0 in range(0, hi, BLOCK_N):
            cols = n0 + offs_n
            mask_n = cols < seqlen
            kv_off = (start + cols)[:, None] * stride_t + h * stride_h + offs_d[None, :]
            kv_mask = mask_n[:, None] & mask_d[None, :]
            k = tl.load(K + kv_off, mask=kv_mask, other=0.0)
            v = tl.load(V + kv_off, mask=kv_mask, other=0.0)
            s = tl.dot(q, tl.trans(k)) * sm_scale
            # Column 0 is always allowed, so every row has a finite maximum after the first block.
            s = tl.where((cols[None, :] <= offs_m[:, None]) & mask_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        out = acc / l_i[:, None]
        tl.store(Out + (start + offs_m)[:, None] * stride_t + h * stride_h + offs_d[None, :],
                 out.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
        tl.store(LSE + (start + offs_m) * H + h, m_i + tl.log(l_i), mask=mask_m)


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, CU, sm_scale, stride_t, stride_h,
                     H: tl.constexpr, D: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    start = tl.load(CU + b)
    seqlen = tl.load(CU + b + 1) - start
    n0 = pid_n * BLOCK_N
    if n0 < seqlen:
        offs_n = n0 + tl.arange(0, BLOCK_N)
        offs_m0 = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        mask_n = offs_n < seqlen
        mask_d = offs_d < D
        kv_off = (start + offs_n)[:, None] * stride_t + h * stride_h + offs_d[None, :]
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = tl.load(K + kv_off, mask=kv_mask, other=0.0)
        v = tl.load(V + kv_off, mask=kv_mask, other=0.0)
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        lo = (n0 // BLOCK_M) * BLOCK_M  # queries above the diagonal never see these keys
        for m0 in range(lo, seqlen, BLOCK_M):
            offs_m = m0 + offs_m0
            mask_m = offs_m < seqlen
            q_off = (start + offs_m)[:, None] * stride_t + h * stride_h + offs_d[None, :]
            q_mask = mask_m[:, None] & mask_d[None, :]
            q = tl.load(Q + q_off, mask=q_mask, other=0.0)
            do = tl.load(DO + q_off, mask=q_mask, other=0.0)
            lse = tl.load(LSE + (start + offs_m) * H + h, mask=mask_m, other=0.0)
            delta = tl.load(DELTA + (start + offs_m) * H + h, mask=mask_m, other=0.0)
            s = tl.dot(q, tl.trans(k)) * sm_scale
            valid = (offs_n[None, :] <= offs_m[:, None]) & mask_m[:, None] & mask_n[None, :]
            p = tl.where(valid, tl.exp(tl.where(valid, s - lse[:, None], 0.0)), 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do)
            dp = tl.dot(do, tl.trans(v))
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
        tl.store(DK + kv_off, (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
        tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, CU, sm_scale, stride_t, stride_h,
                   H: tl.constexpr, D: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    start = tl.load(CU + b)
    seqlen = tl.load(CU + b + 1) - start
    m0 = pid_m * BLOCK_M
    if m0 < seqlen:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_n0 = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        mask_m = offs_m < seqlen
        mask_d = offs_d < D
        q_off = (start + offs_m)[:, None] * stride_t + h * stride_h + offs_d[None, :]
        q_mask = mask_m[:, None] & mask_d[None, :]
        q = tl.load(Q + q_off, mask=q_mask, other=0.0)
        do = tl.load(DO + q_off, mask=q_mask, other=0.0)
        lse = tl.load(LSE + (start + offs_m) * H + h, mask=mask_m, other=0.0)
        delta = tl.load(DELTA + (start + offs_m) * H + h, mask=mask_m, other=0.0)
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        hi = tl.minimum(m0 + BLOCK_M, seqlen)
        for n0 in range(0, hi, BLOCK_N):
            offs_n = n0 + offs_n0
            mask_n = offs_n < seqlen
            kv_off = (start + offs_n)[:, None] * stride_t + h * stride_h + offs_d[None, :]
            kv_mask = mask_n[:, None] & mask_d[None, :]
            k = tl.load(K + kv_off, mask=kv_mask, other=0.0)
            v = tl.load(V + kv_off, mask=kv_mask, other=0.0)
            s = tl.dot(q, tl.trans(k)) * sm_scale
            valid = (offs_n[None, :] <= offs_m[:, None]) & mask_m[:, None] & mask_n[None, :]
            p = tl.where(valid, tl.exp(tl.where(valid, s - lse[:, None], 0.0)), 0.0)
            dp = tl.dot(do, tl.trans(v))
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k)
        tl.store(DQ + q_off, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_mask)


def _blocks(head_dim: int, device: torch.device) -> tuple[int, int, int]:
    block_d = max(16, triton.next_power_of_2(head_dim))
    # Small blocks keep the CPU interpreter quick; 64 suits the GPU's tensor cores at these head dims.
    block = 64 if device.type == "cuda" else 16
    return block, block, block_d


class JaggedCausalAttention(torch.autograd.Function):
    """Autograd wrapper: ``forward(q, k, v, cu_seqlens, max_seqlen, sm_scale) -> out`` on packed tensors."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens, max_seqlen: int, sm_scale: float):  # noqa: ANN001
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        total, heads, head_dim = q.shape
        batch = cu_seqlens.numel() - 1
        cu = cu_seqlens.to(torch.int32).contiguous()
        out = torch.empty_like(q)
        lse = torch.empty((total, heads), dtype=torch.float32, device=q.device)
        block_m, block_n, block_d = _blocks(head_dim, q.device)
        grid = (triton.cdiv(max_seqlen, block_m), batch * heads)
        _fwd_kernel[grid](q, k, v, out, lse, cu, sm_scale, q.stride(0), q.stride(1),
                          H=heads, D=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
        ctx.save_for_backward(q, k, v, out, lse, cu)
        ctx.max_seqlen, ctx.sm_scale = max_seqlen, sm_scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001
        q, k, v, out, lse, cu = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        total, heads, head_dim = q.shape
        batch = cu.numel() - 1
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()  # (total, heads)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        block_m, block_n, block_d = _blocks(head_dim, q.device)
        meta = dict(H=heads, D=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d)
        _bwd_dkdv_kernel[(triton.cdiv(ctx.max_seqlen, block_n), batch * heads)](
            q, k, v, grad_out, lse, delta, dk, dv, cu, ctx.sm_scale, q.stride(0), q.stride(1), **meta)
        _bwd_dq_kernel[(triton.cdiv(ctx.max_seqlen, block_m), batch * heads)](
            q, k, v, grad_out, lse, delta, dq, cu, ctx.sm_scale, q.stride(0), q.stride(1), **meta)
        return dq, dk, dv, None, None, None


def jagged_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                            max_seqlen: int, sm_scale: float | None = None) -> torch.Tensor:
    """Causal softmax attention over packed sequences: ``(total, heads, head_dim)`` in and out."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    return JaggedCausalAttention.apply(q, k, v, cu_seqlens, int(max_seqlen), float(scale))
