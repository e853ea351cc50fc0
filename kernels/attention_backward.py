"""Non-causal attention backward for short sequences in Triton, written straight into the QKV projection's
gradient: one program per (batch row, head) holds the whole sequence, so the probabilities are recomputed
once, no partial sum leaves the chip, and dq and dk are rotated back (RoPE's transpose) on the way out.

It replaces, in the training ops of trm_fast.ops.recomputed_attention, PyTorch's attention backward (cuDNN's on
Hopper) followed by kernels/rope.rope_pack_backward's packing pass: on an H200 at sudoku_attn's batch 768 it took
467.6 us where that pair took 693.5 us (bench/results/2026-12-07_h200_54d41b9_attention_backward_microbench.json;
cuDNN's backward alone ran 468 us in another call, 79 TFLOP/s).

Math, per batch row b and head h (positions i, j < S, scale = 1/sqrt(D); fp32 unless said otherwise), from the
forward's rotated q', k', v (as it kept them), its output o and logsumexp lse, and dout:
    p_ij   = exp(q'_i . k'_j * scale - lse_i)               the forward's softmax, recomputed
    dv_j   = sum_i p_ij dout_i
    dp_ij  = dout_i . v_j
    ds_ij  = p_ij (dp_ij - delta_i),   delta_i = dout_i . o_i
    dq'_i  = scale sum_j ds_ij k'_j,   dk'_j = scale sum_i ds_ij q'_i
    dq, dk = RoPE's transpose of dq', dk' (kernels/rope.unrotate; none without tables)
p and ds are rounded to the inputs' dtype before their products, as FlashAttention's backward rounds them.

Shapes: qkv (B, S, 3H, D) (q heads, then k, then v) with unit stride on D; out and dout (B, S, H D) with unit
stride on the last dim; lse (B, H, S) fp32 with unit stride on S; cos, sin (S, D) fp32 or None -> dqkv
(B, S, 3H, D) contiguous. S <= 128 (the sequence is one tile), D a power of two from 32 to 128 (a half is a
dot's K): trm_fast.ops.recomputed_attention.fused_backward_unsupported says so before a call.

Floor per call, at sudoku_attn's batch 768 (S 97, H 8, D 64, bf16): read q, k, v, out, dout (5 B S H D
elements) and write dq, dk, dv (3): 8 x 76.3 MB = 610 MB, 145 us at 4.2 TB/s. Five products of S x S x D per
head, 37 GFLOP at S = 97 (64 GFLOP as the padded 128-row tiles run them, 81 us at 790 TFLOP/s): memory-bound.
The pair it replaces moves 14 units (the attention backward reads 5 and writes 3, plus its own delta pass; the
packing pass reads 3 and writes 3), 1.07 GB.
"""

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from ..backend import interpreting
from .rope import tables, unrotate
from .rope_tables import equal_halves


def _configs():
    """Warps sharing a head's tiles, and heads per program (with two stages, the next head's tiles load while
    this one's products run); one config under the interpreter, with two heads so the tests cover the loop."""
    if interpreting():
        return [triton.Config({"HEADS": 2}, num_warps=4, num_stages=1)]
    return [triton.Config({"HEADS": heads}, num_warps=warps, num_stages=stages)
            for heads, stages in ((1, 1), (2, 1), (2, 2), (4, 2)) for warps in (4, 8)]


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    # fp32 operands multiply in full precision where asked (a GPU's fp32 tl.dot is TF32 otherwise)
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.autotune(configs=_configs(), key=["S", "D"])
@triton.jit
def _attention_backward_kernel(qkv_ptr, stride_qb, stride_qs, stride_qh, o_ptr, stride_ob, stride_os, do_ptr,
                               stride_db, stride_ds, lse_ptr, stride_lb, stride_lh, g_ptr, stride_gb, stride_gs,
                               stride_gh, cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                               S, H, BH, scale, D: tl.constexpr, BLOCK: tl.constexpr, ROPE: tl.constexpr,
                               EQUAL_HALVES: tl.constexpr, IEEE: tl.constexpr, HEADS: tl.constexpr):
    # one program: HEADS consecutive (batch row, head) pairs of the B H, one after the other
    HALF: tl.constexpr = D // 2
    rows = tl.arange(0, BLOCK)
    half = tl.arange(0, HALF)[None, :]
    full = tl.arange(0, D)[None, :]
    at = rows.to(tl.int64)[:, None]
    if ROPE:  # the tables at every position: the same for every head
        cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                                        rows, tl.arange(0, HALF), rows < S, HALF, EQUAL_HALVES)
    for i in range(HEADS):
        pair = tl.program_id(0) * HEADS + i
        b = (pair // H).to(tl.int64)
        h = (pair % H).to(tl.int64)
        valid = rows < tl.where(pair < BH, S, 0)  # the last program's pairs past B H read and write nothing

        # q' and k' in halves (RoPE's transpose works on halves), v, out and dout whole; rows past S read zeros
        qkv = qkv_ptr + b * stride_qb + at * stride_qs + half
        q1 = tl.load(qkv + h * stride_qh, mask=valid[:, None], other=0.0)
        q2 = tl.load(qkv + h * stride_qh + HALF, mask=valid[:, None], other=0.0)
        k1 = tl.load(qkv + (H + h) * stride_qh, mask=valid[:, None], other=0.0)
        k2 = tl.load(qkv + (H + h) * stride_qh + HALF, mask=valid[:, None], other=0.0)
        v = tl.load(qkv_ptr + b * stride_qb + at * stride_qs + (2 * H + h) * stride_qh + full, mask=valid[:, None],
                    other=0.0)
        o = tl.load(o_ptr + b * stride_ob + at * stride_os + h * D + full, mask=valid[:, None], other=0.0)
        do = tl.load(do_ptr + b * stride_db + at * stride_ds + h * D + full, mask=valid[:, None], other=0.0)
        lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + rows, mask=valid, other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)

        scores = _dot(q1, tl.trans(k1), IEEE) + _dot(q2, tl.trans(k2), IEEE)
        p = tl.exp(scores * scale - lse[:, None])
        p = tl.where(valid[:, None] & valid[None, :], p, 0.0)  # padded keys and queries take no probability
        dv = _dot(tl.trans(p.to(do.dtype)), do, IEEE)
        dp = _dot(do, tl.trans(v), IEEE)
        ds = (p * (dp - delta[:, None])).to(q1.dtype)
        dq1 = _dot(ds, k1, IEEE) * scale
        dq2 = _dot(ds, k2, IEEE) * scale
        dst = tl.trans(ds)
        dk1 = _dot(dst, q1, IEEE) * scale
        dk2 = _dot(dst, q2, IEEE) * scale
        if ROPE:
            dq1, dq2 = unrotate(dq1, dq2, cos1, cos2, sin1, sin2)
            dk1, dk2 = unrotate(dk1, dk2, cos1, cos2, sin1, sin2)

        g = g_ptr + b * stride_gb + at * stride_gs + half
        out_dtype = g_ptr.dtype.element_ty
        tl.store(g + h * stride_gh, dq1.to(out_dtype), mask=valid[:, None])
        tl.store(g + h * stride_gh + HALF, dq2.to(out_dtype), mask=valid[:, None])
        tl.store(g + (H + h) * stride_gh, dk1.to(out_dtype), mask=valid[:, None])
        tl.store(g + (H + h) * stride_gh + HALF, dk2.to(out_dtype), mask=valid[:, None])
        tl.store(g_ptr + b * stride_gb + at * stride_gs + (2 * H + h) * stride_gh + full, dv.to(out_dtype),
                 mask=valid[:, None])


def attention_backward_packed(dout: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                              cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], num_heads: int) -> torch.Tensor:
    """The gradient of the QKV projection's output, dqkv (B, S, 3H, D) contiguous: the attention's backward from
    dout (B, S, H D), the kept rotated projection qkv (B, S, 3H, D), the output out (B, S, H D) and its logsumexp
    lse (B, H, S) fp32, with dq and dk rotated back by cos, sin (S, D) fp32 where given. The caller checks shapes
    (trm_fast.ops.recomputed_attention's `unsupported` and `fused_backward_unsupported`)."""
    b, s, heads3, d = qkv.shape
    dout = dout if dout.stride(-1) == 1 else dout.contiguous()
    out = out if out.stride(-1) == 1 else out.contiguous()
    lse = lse if lse.stride(-1) == 1 else lse.contiguous()
    dqkv = torch.empty((b, s, heads3, d), dtype=qkv.dtype, device=qkv.device)
    rope = cos is not None
    tab_c, tab_s = (cos, sin) if rope else (lse, lse)  # any pointer where there are no tables: never read
    pairs = b * num_heads
    _attention_backward_kernel[lambda meta: (triton.cdiv(pairs, meta["HEADS"]),)](
        qkv, qkv.stride(0), qkv.stride(1), qkv.stride(2), out, out.stride(0), out.stride(1), dout, dout.stride(0),
        dout.stride(1), lse, lse.stride(0), lse.stride(1), dqkv, dqkv.stride(0), dqkv.stride(1), dqkv.stride(2),
        tab_c, tab_c.stride(0), tab_c.stride(-1), tab_s, tab_s.stride(0), tab_s.stride(-1), s, num_heads, pairs,
        1 / math.sqrt(d), D=d, BLOCK=max(16, triton.next_power_of_2(s)), ROPE=rope,
        EQUAL_HALVES=rope and equal_halves(cos, sin), IEEE=qkv.dtype == torch.float32)
    return dqkv
