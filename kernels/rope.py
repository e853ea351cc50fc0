"""Rotary position embedding in Triton: the rotation the fused kernels apply to q and k, and a pass that
rotates the q and k heads of a QKV projection in place, forward or back.

Math, per position s and head, with the head's halves [a | b] (rotate_half([a | b]) = [-b | a]), fp32, one
rounding to the input dtype:
    forward:   a' = a cos1 - b sin1,    b' = b cos2 + a sin2
    backward:  da = da' cos1 + db' sin2,   db = db' cos2 - da' sin1     (the transpose of the forward)
cos1, sin1 are the tables' first halves at s, cos2, sin2 their second (equal for every rotate-half table,
kernels/rope_tables.py). The backward is what autograd computes through the reference's fp32 RoPE
(trm_fast.ops.rope): fp32 products and sums of the rounded gradient, rounded once.

Shapes: qkv (B, S, 3H, D) with unit stride on D (q heads, then k, then v; only the first 2H are touched);
cos, sin (S, D) fp32. Floor per call: read and write 2 B S H D elements (q and k), the tables from L2.
At sudoku_attn's batch 768 (bf16): 305 MB, 73 us at 4.2 TB/s.
"""

import torch
import triton
import triton.language as tl

from .rope_tables import equal_halves


@triton.jit
def tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d, rows, cols, row_mask,
           HALF: tl.constexpr, EQUAL_HALVES: tl.constexpr):
    """cos and sin at these positions, each half of the head apart: (rows, HALF) fp32 tiles cos1, cos2, sin1,
    sin2 (zeros past row_mask); with EQUAL_HALVES (kernels/rope_tables.py) the second halves are the first."""
    cos = cos_ptr + rows[:, None] * stride_cos_s + cols[None, :] * stride_cos_d
    sin = sin_ptr + rows[:, None] * stride_sin_s + cols[None, :] * stride_sin_d
    cos1 = tl.load(cos, mask=row_mask[:, None], other=0.0)
    sin1 = tl.load(sin, mask=row_mask[:, None], other=0.0)
    if EQUAL_HALVES:
        cos2, sin2 = cos1, sin1
    else:
        cos2 = tl.load(cos + HALF * stride_cos_d, mask=row_mask[:, None], other=0.0)
        sin2 = tl.load(sin + HALF * stride_sin_d, mask=row_mask[:, None], other=0.0)
    return cos1, cos2, sin1, sin2


@triton.jit
def rotate(a, b, cos1, cos2, sin1, sin2):
    """The halves a, b of q or k rotated by position: a' = a cos1 - b sin1 and b' = b cos2 + a sin2, in fp32,
    rounded to the input dtype as the reference rounds q' and k' before attention."""
    a32, b32 = a.to(tl.float32), b.to(tl.float32)
    return (a32 * cos1 - b32 * sin1).to(a.dtype), (b32 * cos2 + a32 * sin2).to(a.dtype)


@triton.jit
def unrotate(da, db, cos1, cos2, sin1, sin2):
    """`rotate`'s backward: the gradients of a, b from those of a', b' (its transpose), fp32, rounded once."""
    da32, db32 = da.to(tl.float32), db.to(tl.float32)
    return (da32 * cos1 + db32 * sin2).to(da.dtype), (db32 * cos2 - da32 * sin1).to(da.dtype)


@triton.jit
def _rope_qk_kernel(qkv_ptr, stride_b, stride_s, stride_h, cos_ptr, stride_cos_s, stride_cos_d, sin_ptr,
                    stride_sin_s, stride_sin_d, M, S, HALF: tl.constexpr, BACKWARD: tl.constexpr,
                    EQUAL_HALVES: tl.constexpr, BLOCK_M: tl.constexpr):
    # one program: BLOCK_M tokens (rows of B S) of one q or k head, both halves; in place
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    head = tl.program_id(1).to(tl.int64)
    mask = rows < M
    pos = rows % S
    cols = tl.arange(0, HALF)
    base = (qkv_ptr + (rows // S).to(tl.int64)[:, None] * stride_b + pos.to(tl.int64)[:, None] * stride_s
            + head * stride_h + cols[None, :])
    a = tl.load(base, mask=mask[:, None], other=0.0)
    b = tl.load(base + HALF, mask=mask[:, None], other=0.0)
    cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d, pos,
                                    cols, mask, HALF, EQUAL_HALVES)
    if BACKWARD:
        a, b = unrotate(a, b, cos1, cos2, sin1, sin2)
    else:
        a, b = rotate(a, b, cos1, cos2, sin1, sin2)
    tl.store(base, a, mask=mask[:, None])
    tl.store(base + HALF, b, mask=mask[:, None])


def rope_qk_(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int,
             backward: bool = False) -> torch.Tensor:
    """Rotate the q and k heads of qkv (B, S, 3H, D) in place (their gradients back, with `backward`); returns
    qkv. The caller checks shapes (trm_fast.ops.recomputed_attention); D is a power of two."""
    b, s, _, d = qkv.shape
    m = b * s
    # 32 tokens of a head per program at D = 64: 4 KB of bf16 in and out, enough loads in flight per SM
    block_m = max(1, min(triton.next_power_of_2(m), 4096 // d))
    grid = (triton.cdiv(m, block_m), 2 * num_heads)
    _rope_qk_kernel[grid](qkv, qkv.stride(0), qkv.stride(1), qkv.stride(2), cos, cos.stride(0), cos.stride(1), sin,
                          sin.stride(0), sin.stride(1), m, s, HALF=d // 2, BACKWARD=backward,
                          EQUAL_HALVES=equal_halves(cos, sin), BLOCK_M=block_m)
    return qkv
