"""Non-causal attention backward for short sequences in Triton, written straight into the QKV projection's
gradient: one program per (batch row, head) holds all of its queries, so the probabilities are recomputed
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

One kernel computes it, one program per (batch row, head) (or two, one after the other). A head's queries stay
whole, one tile of BLOCK rows, while its keys pass BLOCK_N at a time: each key block meets every query in one
step, so its dk and dv are whole when the step ends, and only dq sums over the steps, in registers, with no
atomics. BLOCK_N = BLOCK is the whole sequence at once (every score tile BLOCK x BLOCK, the form timed first);
smaller key blocks hold BLOCK x BLOCK_N score tiles, so fewer registers are live (the autotuner picks).
(A query-blocked form, which kept k' and v while 32 or 64 query rows passed and summed dk and dv over the
steps as FlashAttention's backward does, ran 623.7 us against this kernel's 438.5 us on an H100 and was dropped:
bench/results/2026-12-07_h100_83b8885_attention_backward_microbench.json.)

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
    """Keys per step (BLOCK_N; as many as the tile holds is the whole tile at once), warps, heads per program
    (with two stages, the next head's tiles load while this one's products run), and whether dv's product comes
    before dp's or after (the same values; the order moves what is live at once: under Triton 3.6, one head at 8
    warps, 584 B of spill a thread first and 432 B after). One config under the interpreter: two heads and 32-key
    steps, so that the tests cover both loops."""
    if interpreting():
        return [triton.Config({"HEADS": 2, "BLOCK_N": 32, "DV_FIRST": True}, num_warps=4, num_stages=1)]
    whole = [triton.Config({"HEADS": heads, "BLOCK_N": 128, "DV_FIRST": dv_first}, num_warps=8, num_stages=stages)
             for heads, stages in ((1, 1), (2, 2)) for dv_first in (True, False)]
    return whole + [triton.Config({"HEADS": heads, "BLOCK_N": block_n, "DV_FIRST": False}, num_warps=warps,
                                  num_stages=stages)
                    for block_n in (64, 32) for heads, stages in ((1, 2), (2, 2)) for warps in (4, 8)]


def _prune(configs, named_args, **kwargs):
    # key steps no wider than the sequence's tile; a short sequence (one tile of 16) takes it whole
    fit = [c for c in configs if c.kwargs["BLOCK_N"] <= kwargs["BLOCK"]]
    return fit or [triton.Config({"HEADS": 1, "BLOCK_N": kwargs["BLOCK"], "DV_FIRST": True}, num_warps=4,
                                 num_stages=1)]


@triton.jit
def _dot(a, b, acc, IEEE: tl.constexpr):
    # acc + a b; fp32 operands multiply in full precision where asked (a GPU's fp32 tl.dot is TF32 otherwise)
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)


@triton.jit
def _rows_of(ptr, b, stride_b, at, stride_s, col0, cols, valid):
    # a (rows, len(cols)) tile of one head of a (B, S, ...) tensor: its rows `at`, columns col0 + cols. Only the
    # batch row's offset b * stride_b is int64; the offsets inside it are int32 (the launcher checks that they
    # fit), which at sm_90a took 448 B of spill a thread from 688 (whole tile, 8 warps, Triton 3.6)
    return tl.load(ptr + b * stride_b + at * stride_s + col0 + cols, mask=valid[:, None], other=0.0)


@triton.jit
def _store_rows(ptr, b, stride_b, at, stride_s, col0, cols, valid, x):
    tl.store(ptr + b * stride_b + at * stride_s + col0 + cols, x.to(ptr.dtype.element_ty), mask=valid[:, None])


@triton.autotune(configs=_configs(), key=["S", "D"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _attention_backward_kernel(qkv_ptr, stride_qb, stride_qs, stride_qh, o_ptr, stride_ob, stride_os, do_ptr,
                               stride_db, stride_ds, lse_ptr, stride_lb, stride_lh, g_ptr, stride_gb, stride_gs,
                               stride_gh, cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                               S, H, BH, scale, D: tl.constexpr, BLOCK: tl.constexpr, ROPE: tl.constexpr,
                               EQUAL_HALVES: tl.constexpr, IEEE: tl.constexpr, HEADS: tl.constexpr,
                               BLOCK_N: tl.constexpr, DV_FIRST: tl.constexpr):
    # one program: HEADS consecutive (batch row, head) pairs of the B H, one after the other. A head's queries
    # stay whole (one BLOCK-row tile) while its keys pass BLOCK_N at a time: every query meets a key block in
    # one step, so that block's dk and dv are whole when the step ends and are stored, and only dq sums over
    # the steps, in registers
    HALF: tl.constexpr = D // 2
    rows = tl.arange(0, BLOCK)
    half = tl.arange(0, HALF)[None, :]
    full = tl.arange(0, D)[None, :]
    at = rows[:, None]
    if ROPE:  # the tables at every query position: the same for every head
        cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                                        rows, tl.arange(0, HALF), rows < S, HALF, EQUAL_HALVES)
    for i in range(HEADS):
        pair = tl.program_id(0) * HEADS + i
        b = (pair // H).to(tl.int64)
        h = pair % H
        n = tl.where(pair < BH, S, 0)  # the last program's pairs past B H read and write nothing
        valid = rows < n

        # q' in halves (RoPE's transpose works on halves), out and dout whole; rows past S read zeros
        q1 = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, h * stride_qh, half, valid)
        q2 = _rows_of(qkv_ptr, b, stride_qb, at, stride_qs, h * stride_qh + HALF, half, valid)
        do = _rows_of(do_ptr, b, stride_db, at, stride_ds, h * D, full, valid)
        o = _rows_of(o_ptr, b, stride_ob, at, stride_os, h * D, full, valid)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)  # dout_i . o_i
        lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + rows, mask=valid, other=0.0)
        dq1 = tl.zeros((BLOCK, HALF), dtype=tl.float32)
        dq2 = tl.zeros((BLOCK, HALF), dtype=tl.float32)
        for n0 in range(0, n, BLOCK_N):
            keys = n0 + tl.arange(0, BLOCK_N)
            key_valid = keys < n
            at_k = keys[:, None]
            k1 = _rows_of(qkv_ptr, b, stride_qb, at_k, stride_qs, (H + h) * stride_qh, half, key_valid)
            k2 = _rows_of(qkv_ptr, b, stride_qb, at_k, stride_qs, (H + h) * stride_qh + HALF, half, key_valid)
            v = _rows_of(qkv_ptr, b, stride_qb, at_k, stride_qs, (2 * H + h) * stride_qh, full, key_valid)

            # the forward's softmax recomputed from its logsumexp (fp32); padded queries and keys: no probability
            scores = _dot(q2, tl.trans(k2), _dot(q1, tl.trans(k1), tl.zeros((BLOCK, BLOCK_N), tl.float32), IEEE),
                          IEEE)
            p = tl.where(valid[:, None] & key_valid[None, :], tl.exp(scores * scale - lse[:, None]), 0.0)
            zeros_kd = tl.zeros((BLOCK_N, D), dtype=tl.float32)
            if DV_FIRST:
                dv = _dot(tl.trans(p.to(do.dtype)), do, zeros_kd, IEEE)
                dp = _dot(do, tl.trans(v), tl.zeros((BLOCK, BLOCK_N), tl.float32), IEEE)
            else:
                dp = _dot(do, tl.trans(v), tl.zeros((BLOCK, BLOCK_N), tl.float32), IEEE)
                dv = _dot(tl.trans(p.to(do.dtype)), do, zeros_kd, IEEE)
            ds = (p * (dp - delta[:, None])).to(q1.dtype)
            dq1 = _dot(ds, k1, dq1, IEEE)
            dq2 = _dot(ds, k2, dq2, IEEE)
            dst = tl.trans(ds)
            dk1 = _dot(dst, q1, tl.zeros((BLOCK_N, HALF), tl.float32), IEEE) * scale
            dk2 = _dot(dst, q2, tl.zeros((BLOCK_N, HALF), tl.float32), IEEE) * scale
            if ROPE:
                if BLOCK_N == BLOCK:  # the one step: its keys are the queries' positions
                    dk1, dk2 = unrotate(dk1, dk2, cos1, cos2, sin1, sin2)
                else:
                    kc1, kc2, ks1, ks2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s,
                                                stride_sin_d, keys, tl.arange(0, HALF), key_valid, HALF, EQUAL_HALVES)
                    dk1, dk2 = unrotate(dk1, dk2, kc1, kc2, ks1, ks2)
            _store_rows(g_ptr, b, stride_gb, at_k, stride_gs, (H + h) * stride_gh, half, key_valid, dk1)
            _store_rows(g_ptr, b, stride_gb, at_k, stride_gs, (H + h) * stride_gh + HALF, half, key_valid, dk2)
            _store_rows(g_ptr, b, stride_gb, at_k, stride_gs, (2 * H + h) * stride_gh, full, key_valid, dv)

        dq1 = dq1 * scale
        dq2 = dq2 * scale
        if ROPE:
            dq1, dq2 = unrotate(dq1, dq2, cos1, cos2, sin1, sin2)
        _store_rows(g_ptr, b, stride_gb, at, stride_gs, h * stride_gh, half, valid, dq1)
        _store_rows(g_ptr, b, stride_gb, at, stride_gs, h * stride_gh + HALF, half, valid, dq2)


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
    for name, t in (("qkv", qkv), ("out", out), ("dout", dout)):  # the kernel's offsets inside a batch row
        if s * t.stride(1) >= 2**31:
            raise ValueError(f"attention_backward_packed: {name}'s batch row spans {s * t.stride(1)} elements, "
                             "past the kernel's int32 offsets")
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
