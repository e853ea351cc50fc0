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

Two other forms were written and timed on an H100, and lost (bench/results/2026-12-07_h100_83b8885_* and
..._4907d60_*): a query-blocked one that kept k' and v while 32 or 64 query rows passed, summing dk and dv as
FlashAttention's backward does (623.7 us against this kernel's 438.5), and a key-stepped one that kept the
queries whole while keys passed 32, 64 or 128 at a time, summing dq (557.8 us at its best, the whole tile).

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
    """Warps sharing a head's tiles, heads per program (with two stages, the next head's tiles load while this
    one's products run), and whether dv's product comes before dp's or after (the same values in another order of
    what is live at once). On an H100 the autotuner took dp's first, 4 heads and 8 warps, at S 97 and 82, a
    config that spills 2.5 KB a thread under Triton 3.6 (bench/results/2026-12-07_sm90a_triton3.6_whole_tile_*):
    the spill is not what sets its pace. One config under the interpreter, with two heads so the tests cover the
    loop."""
    if interpreting():
        return [triton.Config({"HEADS": 2, "DV_FIRST": True}, num_warps=4, num_stages=1)]
    return [triton.Config({"HEADS": heads, "DV_FIRST": dv_first}, num_warps=warps, num_stages=stages)
            for heads, stages in ((1, 1), (2, 1), (2, 2), (4, 2)) for warps in (4, 8) for dv_first in (True, False)]


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    # fp32 operands multiply in full precision where asked (a GPU's fp32 tl.dot is TF32 otherwise)
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _rows_of(ptr, b, stride_b, at, stride_s, col0, cols, valid):
    # a (rows, len(cols)) tile of one head of a (B, S, ...) tensor: its rows `at`, columns col0 + cols
    return tl.load(ptr + b * stride_b + at * stride_s + col0 + cols, mask=valid[:, None], other=0.0)


@triton.jit
def _store_rows(ptr, b, stride_b, at, stride_s, col0, cols, valid, x):
    tl.store(ptr + b * stride_b + at * stride_s + col0 + cols, x.to(ptr.dtype.element_ty), mask=valid[:, None])


@triton.jit
def _probabilities(q1, q2, k1, k2, o, do, lse, valid, scale, IEEE: tl.constexpr):
    # (p, delta) of a head: the forward's softmax recomputed from its logsumexp (fp32), and delta_i = dout_i . o_i
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
    scores = _dot(q1, tl.trans(k1), IEEE) + _dot(q2, tl.trans(k2), IEEE)
    p = tl.exp(scores * scale - lse[:, None])
    return tl.where(valid[:, None] & valid[None, :], p, 0.0), delta  # padded keys and queries: no probability


@triton.autotune(configs=_configs(), key=["S", "D"])
@triton.jit
def _attention_backward_kernel(qkv_ptr, stride_qb, stride_qs, stride_qh, o_ptr, stride_ob, stride_os, do_ptr,
                               stride_db, stride_ds, lse_ptr, stride_lb, stride_lh, g_ptr, stride_gb, stride_gs,
                               stride_gh, cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                               S, H, BH, scale, D: tl.constexpr, BLOCK: tl.constexpr, ROPE: tl.constexpr,
                               EQUAL_HALVES: tl.constexpr, IEEE: tl.constexpr, HEADS: tl.constexpr,
                               DV_FIRST: tl.constexpr):
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
        q1 = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, h * stride_qh, half, valid)
        q2 = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, h * stride_qh + HALF, half, valid)
        k1 = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, (H + h) * stride_qh, half, valid)
        k2 = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, (H + h) * stride_qh + HALF, half, valid)
        v = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, (2 * H + h) * stride_qh, full, valid)
        o = _rows_of(o_ptr, b, stride_ob, at, stride_os, h * D, full, valid)
        do = _rows_of(do_ptr, b, stride_db, at, stride_ds, h * D, full, valid)
        lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + rows, mask=valid, other=0.0)
        p, delta = _probabilities(q1, q2, k1, k2, o, do, lse, valid, scale, IEEE)
        if DV_FIRST:
            dv = _dot(tl.trans(p.to(do.dtype)), do, IEEE)
            dp = _dot(do, tl.trans(v), IEEE)
        else:
            dp = _dot(do, tl.trans(v), IEEE)
            dv = _dot(tl.trans(p.to(do.dtype)), do, IEEE)
        ds = (p * (dp - delta[:, None])).to(q1.dtype)
        dq1 = _dot(ds, k1, IEEE) * scale
        dq2 = _dot(ds, k2, IEEE) * scale
        dst = tl.trans(ds)
        dk1 = _dot(dst, q1, IEEE) * scale
        dk2 = _dot(dst, q2, IEEE) * scale
        if ROPE:
            dq1, dq2 = unrotate(dq1, dq2, cos1, cos2, sin1, sin2)
            dk1, dk2 = unrotate(dk1, dk2, cos1, cos2, sin1, sin2)

        _store_rows(g_ptr, b, stride_gb, at, stride_gs, h * stride_gh, half, valid, dq1)
        _store_rows(g_ptr, b, stride_gb, at, stride_gs, h * stride_gh + HALF, half, valid, dq2)
        _store_rows(g_ptr, b, stride_gb, at, stride_gs, (H + h) * stride_gh, half, valid, dk1)
        _store_rows(g_ptr, b, stride_gb, at, stride_gs, (H + h) * stride_gh + HALF, half, valid, dk2)
        _store_rows(g_ptr, b, stride_gb, at, stride_gs, (2 * H + h) * stride_gh, full, valid, dv)


def attention_backward_packed(dout: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                              cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], num_heads: int
                              ) -> torch.Tensor:
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
    args = (qkv, qkv.stride(0), qkv.stride(1), qkv.stride(2), out, out.stride(0), out.stride(1), dout, dout.stride(0),
            dout.stride(1), lse, lse.stride(0), lse.stride(1), dqkv, dqkv.stride(0), dqkv.stride(1), dqkv.stride(2),
            tab_c, tab_c.stride(0), tab_c.stride(-1), tab_s, tab_s.stride(0), tab_s.stride(-1), s, num_heads, pairs,
            1 / math.sqrt(d))
    consts = dict(D=d, BLOCK=max(16, triton.next_power_of_2(s)), ROPE=rope,
                  EQUAL_HALVES=rope and equal_halves(cos, sin), IEEE=qkv.dtype == torch.float32)
    _attention_backward_kernel[lambda meta: (triton.cdiv(pairs, meta["HEADS"]),)](*args, **consts)
    return dqkv
