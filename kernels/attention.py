"""Non-causal multi-head attention forward in Triton, with RoPE applied to q and k as they are loaded.

Math, per batch row b and head h (positions i, j < S; fp32 unless said otherwise):
    q' = round(q * cos + rotate_half(q) * sin),  k' likewise,  rotate_half([a | b]) = [-b | a]
         (round: back to the input dtype, as the reference does; no RoPE when the tables are None)
    s_ij = q'_i . k'_j / sqrt(D)
    o_i  = sum_j softmax_j(s_ij) v_j
The softmax is the online one of flash attention: per block of BLOCK_N keys the running row maximum m,
the running sum l and the unnormalised output are rescaled by exp(m_old - m_new); scores never leave
the chip, so any S works with the same registers.

Shapes: qkv (B, S, 3H, D) as the model's QKV projection makes it (heads 0..H-1 are q, H..2H-1 k,
2H..3H-1 v), unit stride on D and any other strides; cos, sin (S, D) fp32 or None; out (B, S, H*D)
contiguous in qkv's dtype, the layout the output projection reads. D is a power of two, 32..128 (each half
of it is a dot product's K, 16 at least).

Floor per call: 4 * B*H*S^2*D FLOPs (QK^T and PV); bytes: read qkv (3 * B*S*H*D elements), write out
(B*S*H*D), plus the two tables (2 * S*D fp32). At sudoku_attn (B 768, S 97, H 8, D 64, bf16):
14.8 GFLOP and 305 MB, i.e. 73 us at 4.2 TB/s against 19 us at 790 TFLOP/s: memory-bound at this S.
"""

import math

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from ..backend import interpreting
from . import tma_gemm
from .rope import rotate, tables
from .rope_tables import equal_halves


def _configs():
    """Tile sizes to try, keyed on (S, D, H). Under the CPU interpreter, autotuning would run every config
    through numpy: one small config instead (key blocks of 32, so the tests cross several blocks; two heads
    per program, so they cover the head loop)."""
    if interpreting():
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "HEADS": 2}, num_warps=4, num_stages=1)]
    configs = []
    for block_m in (32, 64, 128):
        for block_n in (32, 64, 128):  # 128 holds a whole Sudoku sequence (S 97, 82) in one key block
            for heads in (1, 2, 4):
                for warps in (4, 8):
                    # 8 warps on 32 query rows split the key axis too, repeating the softmax's row reductions;
                    # 4 warps on a 128 x 128 score tile hold 128 fp32 scores per thread and spill
                    if (block_m == 32 and warps == 8) or (block_m * block_n == 128 * 128 and warps == 4):
                        continue
                    for stages in (1, 2, 3):
                        configs.append(triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "HEADS": heads},
                                                     num_warps=warps, num_stages=stages))
    return configs


def _prune(configs, named_args, **kwargs):
    """The configs worth timing at this S and H, so that a first call tunes in seconds. Up to 128 positions,
    one key block covering the sequence (several smaller ones pad no less, 97 rounds to 128 with any tile,
    and add the rescaling), query blocks of 64 rows or the whole sequence, and up to 4 heads per program:
    the head loop is then the innermost loop, and 2 stages prefetch the next head's q, k and v while this
    one computes. Past 128, one head per program (the key loop is pipelined, 2 or 3 stages) and query blocks
    of 64 or 128 rows share each K/V load. No more heads per program than H."""
    seq = max(32, triton.next_power_of_2(named_args["S"]))
    heads = named_args["H"]
    configs = [c for c in configs if c.kwargs["HEADS"] <= heads] or configs[:1]
    if seq <= 128:
        kept = [c for c in configs if c.kwargs["BLOCK_N"] == seq and c.kwargs["BLOCK_M"] in (min(64, seq), seq)
                and c.num_stages <= 2 and c.kwargs["HEADS"] <= 4]
    else:
        kept = [c for c in configs if c.kwargs["BLOCK_M"] >= 64 and c.num_stages > 1 and c.kwargs["HEADS"] == 1]
    return kept or configs[:1]


@triton.jit
def _rope_halves(base, rows, stride_row, cols, row_mask, cos_ptr, stride_cos_s, stride_cos_d,
                 sin_ptr, stride_sin_s, stride_sin_d, HALF: tl.constexpr, USE_ROPE: tl.constexpr,
                 EQUAL_HALVES: tl.constexpr):
    """The two halves (rows, HALF) of a q or k tile by pointers, rotated by position when USE_ROPE."""
    ptrs = base + rows[:, None] * stride_row + cols[None, :]
    a = tl.load(ptrs, mask=row_mask[:, None], other=0.0)
    b = tl.load(ptrs + HALF, mask=row_mask[:, None], other=0.0)
    if USE_ROPE:
        cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d,
                                        rows, cols, row_mask, HALF, EQUAL_HALVES)
        a, b = rotate(a, b, cos1, cos2, sin1, sin2)
    return a, b


@triton.autotune(configs=_configs(), key=["S", "H", "HEAD_DIM"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _rope_attention_fwd_kernel(
    qkv_ptr, stride_qkv_b, stride_qkv_s, stride_qkv_h,
    cos_ptr, stride_cos_s, stride_cos_d,
    sin_ptr, stride_sin_s, stride_sin_d,
    out_ptr, stride_out_b, stride_out_s,
    H, S, qk_scale,
    HEAD_DIM: tl.constexpr, USE_ROPE: tl.constexpr, EQUAL_HALVES: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr,
):
    # map the program id: (query block, batch row, group of HEADS heads), query blocks fastest, so the
    # blocks of one head run together and find its keys and values in L2
    pid = tl.program_id(0)
    num_m = tl.cdiv(S, BLOCK_M)
    m_block = pid % num_m
    rest = pid // num_m
    groups = tl.cdiv(H, HEADS)  # the last group may be short
    b = (rest // groups).to(tl.int64)
    first_head = (rest % groups) * HEADS
    batch = qkv_ptr + b * stride_qkv_b
    HALF: tl.constexpr = HEAD_DIM // 2
    half_cols = tl.arange(0, HALF)
    cols = tl.arange(0, HEAD_DIM)
    rows_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = rows_m < S

    for h in tl.range(first_head, tl.minimum(first_head + HEADS, H)):
        q_base = batch + h * stride_qkv_h
        k_base = batch + (H + h) * stride_qkv_h
        v_base = batch + (2 * H + h) * stride_qkv_h
        # the query block, rotated; rows past S are zeros and are not stored
        q_a, q_b = _rope_halves(q_base, rows_m, stride_qkv_s, half_cols, mask_m, cos_ptr, stride_cos_s, stride_cos_d,
                                sin_ptr, stride_sin_s, stride_sin_d, HALF, USE_ROPE, EQUAL_HALVES)
        # online softmax over key blocks, in base 2: qk_scale = log2(e) / sqrt(D)
        m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
        for start_n in range(0, S, BLOCK_N):
            rows_n = start_n + tl.arange(0, BLOCK_N)
            mask_n = rows_n < S
            k_a, k_b = _rope_halves(k_base, rows_n, stride_qkv_s, half_cols, mask_n, cos_ptr, stride_cos_s,
                                    stride_cos_d, sin_ptr, stride_sin_s, stride_sin_d, HALF, USE_ROPE,
                                    EQUAL_HALVES)
            v = tl.load(v_base + rows_n[:, None] * stride_qkv_s + cols[None, :], mask=mask_n[:, None], other=0.0)
            s = tl.dot(q_a, tl.trans(k_a), input_precision=DOT_PRECISION)
            s = tl.dot(q_b, tl.trans(k_b), s, input_precision=DOT_PRECISION) * qk_scale
            # keys past S take no weight; every block has at least one real key, so m_new stays finite
            s = tl.where(mask_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)  # 0 on the first block, where m_i is -inf
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            # P in v's dtype for the second dot, as flash attention does; the sum above stays fp32
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
            m_i = m_new

        # normalise and store (B, S, H*D): head h fills columns h*D .. h*D + D - 1
        out = acc / l_i[:, None]
        out_ptrs = out_ptr + b * stride_out_b + rows_m[:, None] * stride_out_s + h * HEAD_DIM + cols[None, :]
        tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None])


def _tma_configs():
    """Configs of the persistent kernel: warps, and pipeline stages over the (batch, head) units; one program
    per SM (CTAS 1). Compiled for sm_90a (bench/kernel_resources.py), 4 warps spill 1.3-1.8 KB a thread,
    8 use all 255 registers, 3 stages need 256 KiB of shared memory: no two programs fit an SM, and no third
    stage. Under the CPU interpreter one config, three programs (tma_gemm's), so each walks several units."""
    if interpreting():
        return [triton.Config({"CTAS": 1}, num_warps=4, num_stages=1)]
    return [triton.Config({"CTAS": 1}, num_warps=warps, num_stages=stages) for warps in (8, 16) for stages in (1, 2)]


@triton.autotune(configs=_tma_configs(), key=["S", "H", "HEAD_DIM", "ELEMENT_SIZE"])
@triton.jit
def _rope_attention_tma_kernel(
    half_desc, v_desc,
    cos_ptr, stride_cos_s, stride_cos_d,
    sin_ptr, stride_sin_s, stride_sin_d,
    out_ptr, stride_out_b, stride_out_s,
    B, H, S, ELEMENT_SIZE, qk_scale,
    HEAD_DIM: tl.constexpr, USE_ROPE: tl.constexpr, EQUAL_HALVES: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK: tl.constexpr,
    CTAS: tl.constexpr,
):
    # Persistent over the B * H (batch row, head) units of a sequence no longer than BLOCK (one query and one
    # key block each): the tensor memory accelerator loads a unit's q and k halves and v (BLOCK rows from the
    # unit's first position; rows past S belong to the next batch row, or read as zeros past the end), and the
    # loop's stages load the next units while this one computes. Keys past S are masked, queries past S not
    # stored.
    HALF: tl.constexpr = HEAD_DIM // 2
    rows = tl.arange(0, BLOCK)
    real = rows < S
    half_cols = tl.arange(0, HALF)
    cols = tl.arange(0, HEAD_DIM)
    for unit in tl.range(tl.program_id(0), B * H, tl.num_programs(0)):
        b = unit // H
        h = unit % H
        first = b * S
        q_a = half_desc.load([first, h * HEAD_DIM])
        q_b = half_desc.load([first, h * HEAD_DIM + HALF])
        k_a = half_desc.load([first, (H + h) * HEAD_DIM])
        k_b = half_desc.load([first, (H + h) * HEAD_DIM + HALF])
        v = v_desc.load([first, (2 * H + h) * HEAD_DIM])
        if USE_ROPE:
            # positions 0..S-1 for q and k alike; the tables stay in L1 from one unit to the next
            cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos_s, stride_cos_d, sin_ptr, stride_sin_s,
                                            stride_sin_d, rows, half_cols, real, HALF, EQUAL_HALVES)
            q_a, q_b = rotate(q_a, q_b, cos1, cos2, sin1, sin2)
            k_a, k_b = rotate(k_a, k_b, cos1, cos2, sin1, sin2)
        s = tl.dot(q_a, tl.trans(k_a), input_precision=DOT_PRECISION)
        s = tl.dot(q_b, tl.trans(k_b), s, input_precision=DOT_PRECISION) * qk_scale
        s = tl.where(real[None, :], s, float("-inf"))  # keys past S: another row's positions, or zeros
        p = tl.exp2(s - tl.max(s, 1)[:, None])  # base 2: qk_scale = log2(e) / sqrt(D)
        l_i = tl.sum(p, 1)
        # P in v's dtype for the second dot, as flash attention does; the sum above stays fp32
        out = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION) / l_i[:, None]
        out_ptrs = out_ptr + b.to(tl.int64) * stride_out_b + rows[:, None] * stride_out_s + h * HEAD_DIM + cols[None, :]
        tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=real[:, None])


def _tma_rows(qkv: torch.Tensor):
    """qkv (B, S, 3H, D) as the (B S, 3H D) matrix the persistent kernel loads, or None where it cannot: S
    within one block of 128, each position's heads packed (the projection's own layout), and what
    tma_gemm.tma_rows asks (positions that flatten to one row stride, 16-byte aligned, Hopper or newer)."""
    b, s, heads, d = qkv.shape
    if s > 128 or qkv.stride(3) != 1 or qkv.stride(2) != d:
        return None
    return tma_gemm.tma_rows(qkv.as_strided((b, s, heads * d), (qkv.stride(0), qkv.stride(1), 1)))


# Which kernel rope_attention_fwd(tma=None) runs up to S 128: the pointer one. On an H200 the persistent
# TMA one took 345 us against the pointer one's 331 at sudoku_attn's batch 768 (both lose to RoPE + cuDNN's
# SDPA, 234 us; bench/NOTES.md). An experiment may set it (bench/engine_ops.py --attention-tma).
TMA_BY_DEFAULT = False


def rope_attention_fwd(qkv: torch.Tensor, cos, sin, num_heads: int, out=None, tma: bool | None = None) -> torch.Tensor:
    """out (B, S, H*D) = attention of RoPE(q), RoPE(k), v split from qkv (B, S, 3H, D); cos, sin (S, D)
    fp32, or both None for no RoPE. Inputs are those trm_fast.ops.attention.unsupported accepts;
    `out`, if given, must be a (B, S, H*D) tensor of qkv's dtype with unit stride on its last axis. `tma`:
    True runs the persistent TMA kernel (S <= 128, packed heads, Hopper or newer: `_tma_rows`), False the
    pointer kernel (any S and strides), None the TMA one where it runs if TMA_BY_DEFAULT, else the pointer
    one."""
    b, s, _, d = qkv.shape
    if out is None:
        out = torch.empty((b, s, num_heads * d), dtype=qkv.dtype, device=qkv.device)
    use_rope = cos is not None
    one_half = use_rope and equal_halves(cos, sin)  # RoPE's tables: one half of each is read
    if not use_rope:
        cos = sin = qkv  # never read: USE_ROPE=False compiles the loads away
    # fp32 stays fp32 on the tensor cores' inputs (no TF32); 16-bit inputs are exact in any mode
    precision = "ieee" if qkv.dtype == torch.float32 else "tf32"
    rows = _tma_rows(qkv) if tma or (tma is None and TMA_BY_DEFAULT) else None
    if tma and rows is None:
        raise ValueError("tma=True needs S <= 128, qkv's heads and positions packed with 16-byte aligned rows and "
                         "address, and a Hopper or newer GPU")
    if rows is not None:
        block = max(16, triton.next_power_of_2(s))
        half_desc = TensorDescriptor.from_tensor(rows, [block, d // 2])
        v_desc = TensorDescriptor.from_tensor(rows, [block, d])
        units = b * num_heads
        _rope_attention_tma_kernel[tma_gemm.grid(qkv.device, lambda meta: units)](
            half_desc, v_desc, cos, cos.stride(0), cos.stride(-1), sin, sin.stride(0), sin.stride(-1),
            out, out.stride(0), out.stride(1), b, num_heads, s, qkv.element_size(), math.log2(math.e) / math.sqrt(d),
            HEAD_DIM=d, USE_ROPE=use_rope, EQUAL_HALVES=one_half, DOT_PRECISION=precision, BLOCK=block)
        return out
    grid = lambda meta: (triton.cdiv(s, meta["BLOCK_M"]) * b * triton.cdiv(num_heads, meta["HEADS"]),)  # noqa: E731
    _rope_attention_fwd_kernel[grid](
        qkv, qkv.stride(0), qkv.stride(1), qkv.stride(2),
        cos, cos.stride(0), cos.stride(-1),
        sin, sin.stride(0), sin.stride(-1),
        out, out.stride(0), out.stride(1),
        num_heads, s, math.log2(math.e) / math.sqrt(d),
        HEAD_DIM=d, USE_ROPE=use_rope, EQUAL_HALVES=one_half, DOT_PRECISION=precision,
    )
    return out
