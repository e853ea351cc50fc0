"""Rotary position embedding in Triton: the rotation the fused kernels apply to q and k, a pass that rotates
the q and k heads of a QKV projection in place, forward or back, and one that packs the attention's gradients
into the projection's layout, rotating dq and dk back on the way (rope_pack_backward).

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

from typing import Optional

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
def _rope_kernel(src_ptr, src_stride_b, src_stride_s, src_stride_h, dst_ptr, dst_stride_b, dst_stride_s,
                 dst_stride_h, cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d, M, S,
                 HALF: tl.constexpr, MODE: tl.constexpr, EQUAL_HALVES: tl.constexpr, BLOCK_M: tl.constexpr):
    # one program: BLOCK_M tokens (rows of B S) of one head, both halves, read through src and written through
    # dst (the same tensor for the in-place pass); MODE 0 copies, 1 rotates, 2 rotates back
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    head = tl.program_id(1).to(tl.int64)
    mask = rows < M
    pos = rows % S
    batch = (rows // S).to(tl.int64)[:, None]
    cols = tl.arange(0, HALF)[None, :]
    src = src_ptr + batch * src_stride_b + pos.to(tl.int64)[:, None] * src_stride_s + head * src_stride_h + cols
    dst = dst_ptr + batch * dst_stride_b + pos.to(tl.int64)[:, None] * dst_stride_s + head * dst_stride_h + cols
    a = tl.load(src, mask=mask[:, None], other=0.0)
    b = tl.load(src + HALF, mask=mask[:, None], other=0.0)
    if MODE != 0:
        cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                                        pos, tl.arange(0, HALF), mask, HALF, EQUAL_HALVES)
        if MODE == 2:
            a, b = unrotate(a, b, cos1, cos2, sin1, sin2)
        else:
            a, b = rotate(a, b, cos1, cos2, sin1, sin2)
    tl.store(dst, a, mask=mask[:, None])
    tl.store(dst + HALF, b, mask=mask[:, None])


_COPY, _ROTATE, _UNROTATE = 0, 1, 2


def _launch(src: torch.Tensor, dst: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mode: int):
    """dst (B, S, n, D) = src (B, S, n, D) per head, rotated by `mode`; both with unit stride on D (any other
    strides: a view of (B, H, S, D) transposed is one)."""
    b, s, heads, d = dst.shape
    m = b * s
    # 32 tokens of a head per program at D = 64: 4 KB of bf16 in and out, enough loads in flight per SM
    block_m = max(1, min(triton.next_power_of_2(m), 4096 // d))
    _rope_kernel[(triton.cdiv(m, block_m), heads)](
        src, src.stride(0), src.stride(1), src.stride(2), dst, dst.stride(0), dst.stride(1), dst.stride(2), cos,
        cos.stride(0), cos.stride(1), sin, sin.stride(0), sin.stride(1), m, s, HALF=d // 2, MODE=mode,
        EQUAL_HALVES=equal_halves(cos, sin), BLOCK_M=block_m)


def rope_qk_(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int,
             backward: bool = False) -> torch.Tensor:
    """Rotate the q and k heads of qkv (B, S, 3H, D) in place (their gradients back, with `backward`); returns
    qkv. The caller checks shapes (trm_fast.ops.recomputed_attention); D is a power of two."""
    qk = qkv[:, :, :2 * num_heads]
    _launch(qk, qk, cos, sin, _UNROTATE if backward else _ROTATE)
    return qkv


def rope_pack_backward(dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor, cos: Optional[torch.Tensor],
                       sin: Optional[torch.Tensor]) -> torch.Tensor:
    """The gradient of the QKV projection's output, (B, S, 3H, D) contiguous, from the attention's gradients of
    the rotated q and k and of v, each (B, H, S, D) as the attention's backward writes them: dq and dk rotated
    back on the way (without tables, only concatenated), dv copied. One pass where concatenating and then
    rotating in place moves the q and k heads twice: at sudoku_attn's batch 768 (bf16) 458 MB instead of 763 MB.
    The caller checks shapes (trm_fast.ops.recomputed_attention); D is a power of two."""
    grads = [g.transpose(1, 2) for g in (dq, dk, dv)]
    if cos is None:  # nothing to rotate: concatenating is the one pass
        return torch.cat(grads, dim=2)
    b, s, h, d = grads[0].shape
    dqkv = dq.new_empty(b, s, 3 * h, d)
    for i, grad in enumerate(grads):
        _launch(grad if grad.stride(-1) == 1 else grad.contiguous(), dqkv[:, :, i * h:(i + 1) * h], cos, sin,
                _COPY if i == 2 else _UNROTATE)
    return dqkv
