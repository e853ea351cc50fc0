"""The attention variant's post-norm layer for a few puzzles, in one persistent Triton kernel.

At batch 1 a 16-step sudoku_attn evaluation runs 7,819 kernels, 2.5 us each on average, and 19.9 of its 22.6 ms
are kernel time (bench/NOTES.md, "Batch 1"): each library GEMM at M = 97 rows fills 8 to 48 of 132 SMs and
waits on its own ramp-up and tail. This kernel runs a whole layer as six phases of one launch; a program walks
each phase's tiles with a stride of the grid and waits at a grid-wide barrier before the next phase:
    A  qkv = round(h W_qkv^T); q and k turned by RoPE (fp32 math, rounded)       tiles: row block x head slot
    B  attn = softmax(q k^T / sqrt(HD)) v (S <= 128)                            units: puzzle x head x 64 queries
    C  s1 = round(h + round(attn W_o^T)), and each BN-column block's sum of
       squares of s1 per row (ss)                                               tiles: row block x BN columns
    D  a = round(g sigmoid(g) u), g and u = round((s1 W_gu^T) / rms) halves,
       rms from ss (the row's scale applied after the GEMM)                    tiles: row block x BN inner
    E  part[s] = a W_down^T over the s-th of SPLIT slices of K, fp32           units: row block x 64 columns x slice
    F  out = round(rms_norm(round(h1 + round(sum of part)))), h1 = round(s1 / rms)   tiles: 4 rows
(round: to h's dtype, where the official model rounds; adds in fp32, rounded once, as torch's bf16 add. The sums
over K run in another order than cuBLAS's: results agree within the dtype's rounding, not bit for bit.)
The intermediates (qkv, attn, s1, a and part: ~2.5 MB at batch 1) stay in L2 between
phases. bench/NOTES.md has each phase's time at batch 1 and what the tiles and the split were chosen by.

The barrier: each program adds one to a counter (release) and spins until it reads the phase's count (acquire);
after the last phase the last program to finish zeroes it for the next launch. It needs every program resident
at once: the grid is at most one program per SM. Under the CPU interpreter, which runs programs one after another,
the phases launch as six kernels instead (PHASE), which is also how the tests check each phase.

Shapes: h (B, S, D) contiguous; W_qkv (3D, D), W_o (D, D), W_gu (2I, D), W_down (D, I) contiguous, h's dtype;
cos, sin (>= S, HD) fp32 in rotate-half layout, or None; HD = D / H a power of two >= 32, D and I multiples of 64,
S <= 128. FLOPs per layer: 2 B S (4 D^2 + 3 D I) + 4 B S^2 D: 0.68 GFLOP at sudoku_attn's batch 1; 23.4 us on an
H200 there, against 27.8 us for the official layer compiled (bench/NOTES.md).
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from ..backend import interpreting
from .rope import rotate, tables
from .rope_tables import equal_halves

BLOCK = 64  # rows and columns of a GEMM tile (BM, BN)
K_STEP = 64  # a GEMM tile's step along K
QUERY_ROWS = 64  # queries of a phase-B unit: 16 units at sudoku_attn's batch 1 (97 positions, 8 heads)
# rows of a phase-F tile: at batch 1, 97 tiles that each sum up to 8 fp32 K slices of their row. One row a tile
# spreads the phase over 97 programs where 4 rows gave 25: 21.94 against 23.17 us a layer on an H100
# (bench/small_layer.py --sweep, bench/results/2026-12-08_h100_a496ba2_small_layer_sweep.jsonl)
NORM_ROWS = 1
SMS_WITHOUT_GPU = 132  # phase E's split rule under the interpreter: an H100's SMs
MAX_POSITIONS = 128  # phase B holds a puzzle's whole score matrix
# 4 warps and 3 stages: the fastest launch timed at batch 1 (bench/small_layer.py --sweep, H100: 26.2 us a layer
# against 30.4 at 8 warps and 2 stages); 195 registers, no spill (sm_90a, bench/kernel_resources.py small_layer).
# The grid stays at one program per SM, as the barrier needs.
LAUNCH = {"num_warps": 4, "num_stages": 3}


@triton.jit
def _load_acquire(ptr):
    # a plain load with acquire semantics at GPU scope
    return tl.inline_asm_elementwise("ld.global.acquire.gpu.b32 $0, [$1];", "=r,l", [ptr], dtype=tl.int32,
                                     is_pure=False, pack=1)


@triton.jit
def _fence_proxy_async(ptr):
    # orders this thread's generic-proxy accesses (the acquire above it) before its later async-proxy ones (the
    # tensor memory accelerator's loads): without it a TMA load may read what another SM wrote before the barrier
    return tl.inline_asm_elementwise("fence.proxy.async.global;\n\tmov.u32 $0, 0;", "=r,l", [ptr], dtype=tl.int32,
                                     is_pure=False, pack=1)


@triton.jit
def _grid_sync(sync_ptr, target, TMA: tl.constexpr):
    # every program's stores of the phase are issued before its arrival (CTA barrier, then a release at GPU
    # scope); its loads of the next phase follow the acquire that saw all arrivals. It spins on acquire loads:
    # 1.0 us a barrier on an H200 (bench/NOTES.md), against 1.1 spinning on atomic adds of zero, which queue
    # read-modify-writes on the counter's line behind the arrivals, and 1.6 for a flag set by the last arrival
    tl.debug_barrier()
    arrived = tl.atomic_add(sync_ptr, 1, sem="release", scope="gpu") + 1
    while arrived < target:
        arrived = _load_acquire(sync_ptr)
    if TMA:
        _fence_proxy_async(sync_ptr)
    tl.debug_barrier()


@triton.jit
def _dot_rows(x_ptr, stride_x, rows, row_mask, w_ptr, stride_w, w_rows, K, acc, PRECISION: tl.constexpr,
              BK: tl.constexpr):
    # acc += x[rows, :K] @ w[w_rows, :K]^T, K a multiple of BK
    ks = tl.arange(0, BK)
    for k0 in range(0, K, BK):
        x = tl.load(x_ptr + rows[:, None] * stride_x + (k0 + ks)[None, :], mask=row_mask[:, None], other=0.0,
                    cache_modifier=".cg")
        w = tl.load(w_ptr + w_rows[None, :] * stride_w + (k0 + ks)[:, None])
        acc = tl.dot(x, w, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _dot_tiles(x_desc, row0, x_col0, w_desc, w_row0, w_col0, K, acc, PRECISION: tl.constexpr, BK: tl.constexpr):
    # _dot_rows with both tiles loaded by the tensor memory accelerator: acc += x[row0:, x_col0:][:, :K] @
    # w[w_row0:, w_col0:][:, :K]^T, rows past the tensor's read as zeros
    for k0 in range(0, K, BK):
        acc = tl.dot(x_desc.load([row0, x_col0 + k0]), w_desc.load([w_row0, w_col0 + k0]).T, acc,
                     input_precision=PRECISION)
    return acc


@triton.jit
def _two_dots(x_ptr, x_desc, rows, row_mask, row0, w_ptr, w_desc, w_rows, w_row_a, w_row_b, a, b, K: tl.constexpr,
              PRECISION: tl.constexpr, BK: tl.constexpr, TMA: tl.constexpr):
    # a += x[rows] @ w[w_row_a + w_rows]^T and b += x[rows] @ w[w_row_b + w_rows]^T over K, both dots on one x tile
    # per step (phase A's head halves, phase D's gate and up); by TMA the rows from row0 and from w_row_a and w_row_b
    ks = tl.arange(0, BK)
    for k0 in range(0, K, BK):
        if TMA:
            x = x_desc.load([row0, k0])
            a = tl.dot(x, w_desc.load([w_row_a, k0]).T, a, input_precision=PRECISION)
            b = tl.dot(x, w_desc.load([w_row_b, k0]).T, b, input_precision=PRECISION)
        else:
            x = tl.load(x_ptr + rows[:, None] * K + (k0 + ks)[None, :], mask=row_mask[:, None], other=0.0,
                        cache_modifier=".cg")
            w = w_ptr + (w_row_a + w_rows)[None, :] * K + (k0 + ks)[:, None]
            a = tl.dot(x, tl.load(w), a, input_precision=PRECISION)
            b = tl.dot(x, tl.load(w + (w_row_b - w_row_a) * K), b, input_precision=PRECISION)
    return a, b


@triton.jit
def _qkv_rope_phase(h_ptr, wqkv_ptr, h_desc, wqkv_desc, cos_ptr, sin_ptr, stride_cos, stride_sin, qkv_ptr, M, S, pid,
                    nprog, H: tl.constexpr, D: tl.constexpr, HD: tl.constexpr, USE_ROPE: tl.constexpr,
                    EQUAL_HALVES: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                    TMA: tl.constexpr):
    HALF: tl.constexpr = HD // 2
    slots = 3 * H
    half = tl.arange(0, HALF)
    for t in range(pid, tl.cdiv(M, BM) * slots, nprog):
        j = t % slots  # head slot: q heads, then k heads, then v heads
        rows = (t // slots) * BM + tl.arange(0, BM)
        row_mask = rows < M
        if USE_ROPE:  # q and k heads, by position within the puzzle; loaded before the GEMM, which hides them
            cos1, cos2, sin1, sin2 = tables(cos_ptr, stride_cos, 1, sin_ptr, stride_sin, 1, rows % S, half,
                                            row_mask & (rows * 0 + j < 2 * H), HALF, EQUAL_HALVES)
        # the head's two halves side by side from one load of h, so that RoPE pairs column c with c + HALF
        # within the program and the chain of dependent loads is D / BK long, not twice that
        a, b = _two_dots(h_ptr, h_desc, rows, row_mask, (t // slots) * BM, wqkv_ptr, wqkv_desc, half, j * HD,
                         j * HD + HALF, tl.zeros((BM, HALF), tl.float32), tl.zeros((BM, HALF), tl.float32), D,
                         PRECISION, BK, TMA)
        a = a.to(qkv_ptr.dtype.element_ty)
        b = b.to(qkv_ptr.dtype.element_ty)
        if USE_ROPE:
            if j < 2 * H:
                a, b = rotate(a, b, cos1, cos2, sin1, sin2)
        out = qkv_ptr + rows[:, None] * (3 * D) + j * HD + half[None, :]
        tl.store(out, a, mask=row_mask[:, None])
        tl.store(out + HALF, b, mask=row_mask[:, None])


@triton.jit
def _attention_phase(qkv_ptr, attn_ptr, B, S, qk_scale, pid, nprog, H: tl.constexpr, D: tl.constexpr,
                     HD: tl.constexpr, PRECISION: tl.constexpr, BS: tl.constexpr, BQ: tl.constexpr):
    # a unit is BQ queries of one puzzle and head against all its keys: at batch 1, (puzzle, head) alone would
    # be 8 units on 132 SMs
    pos = tl.arange(0, BS)
    real = pos < S
    cols = tl.arange(0, HD)
    q_blocks = tl.cdiv(S, BQ)
    for u in range(pid, B * H * q_blocks, nprog):
        qpos = (u % q_blocks) * BQ + tl.arange(0, BQ)
        q_real = qpos < S
        b = u // q_blocks // H
        h = u // q_blocks % H
        q_rows = b * S + qpos
        base = qkv_ptr + (b * S + pos)[:, None] * (3 * D) + cols[None, :]
        q = tl.load(qkv_ptr + q_rows[:, None] * (3 * D) + h * HD + cols[None, :], mask=q_real[:, None], other=0.0,
                    cache_modifier=".cg")
        k = tl.load(base + (H + h) * HD, mask=real[:, None], other=0.0, cache_modifier=".cg")
        v = tl.load(base + (2 * H + h) * HD, mask=real[:, None], other=0.0, cache_modifier=".cg")
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # base 2: log2(e) / sqrt(HD)
        s = tl.where(real[None, :], s, float("-inf"))
        p = tl.exp2(s - tl.max(s, 1)[:, None])
        # P in v's dtype for the second dot, as flash attention does; the row sums stay fp32
        o = tl.dot(p.to(v.dtype), v, input_precision=PRECISION) / tl.sum(p, 1)[:, None]
        tl.store(attn_ptr + q_rows[:, None] * D + h * HD + cols[None, :], o.to(attn_ptr.dtype.element_ty),
                 mask=q_real[:, None])


@triton.jit
def _o_residual_phase(attn_ptr, wo_ptr, attn_desc, wo_desc, h_ptr, s1_ptr, ss_ptr, M, pid, nprog, D: tl.constexpr,
                      PRECISION: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      TMA: tl.constexpr):
    # s1 = round(h + round(attn W_o^T)) over BN-column blocks; each block's sum of squares of s1's rounded values
    # goes to ss (M, D / BN), so that phase D has the row's norm without a pass over the row first
    n_blocks: tl.constexpr = D // BN
    cols = tl.arange(0, BN)
    for t in range(pid, tl.cdiv(M, BM) * n_blocks, nprog):
        rows = (t // n_blocks) * BM + tl.arange(0, BM)
        nb = t % n_blocks
        n = nb * BN + cols
        row_mask = rows < M
        acc = tl.zeros((BM, BN), tl.float32)
        if TMA:
            acc = _dot_tiles(attn_desc, (t // n_blocks) * BM, 0, wo_desc, nb * BN, 0, D, acc, PRECISION, BK)
        else:
            acc = _dot_rows(attn_ptr, D, rows, row_mask, wo_ptr, D, n, D, acc, PRECISION, BK)
        offs = rows[:, None] * D + n[None, :]
        res = tl.load(h_ptr + offs, mask=row_mask[:, None], other=0.0, cache_modifier=".cg")
        y = (res.to(tl.float32) + acc.to(s1_ptr.dtype.element_ty).to(tl.float32)).to(s1_ptr.dtype.element_ty)
        tl.store(s1_ptr + offs, y, mask=row_mask[:, None])
        y = y.to(tl.float32)
        tl.store(ss_ptr + rows * n_blocks + nb, tl.sum(y * y, 1), mask=row_mask)


@triton.jit
def _row_rstd(ss_ptr, rows, row_mask, eps, D: tl.constexpr, BN: tl.constexpr):
    # 1 / rms of s1's rows, from phase C's per-block sums of squares
    sq = tl.zeros(rows.shape, tl.float32)
    for c in tl.static_range(D // BN):
        sq += tl.load(ss_ptr + rows * (D // BN) + c, mask=row_mask, other=0.0, cache_modifier=".cg")
    return tl.rsqrt(sq / D + eps)


@triton.jit
def _norm_swiglu_phase(s1_ptr, ss_ptr, wgu_ptr, s1_desc, wgu_desc, a_ptr, M, eps, pid, nprog, D: tl.constexpr,
                       I: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       TMA: tl.constexpr):
    # g and u = round((s1 W^T) / rms), the row's scale applied to the GEMM's output, so that s1's tiles go to the
    # dot as loaded and no tile writes h1 (phase F rounds s1 / rms itself). Normalising s1 in the prologue first,
    # as the official model rounds, and writing h1 from one tile per row block took 7.2 us against 5.1 at batch 1
    # (H200, bench/NOTES.md)
    n_blocks: tl.constexpr = I // BN
    cols = tl.arange(0, BN)
    for t in range(pid, tl.cdiv(M, BM) * n_blocks, nprog):
        rows = (t // n_blocks) * BM + tl.arange(0, BM)
        nb = t % n_blocks
        row_mask = rows < M
        rstd = _row_rstd(ss_ptr, rows, row_mask, eps, D, BN)  # before the GEMM, which hides its loads
        g, u = _two_dots(s1_ptr, s1_desc, rows, row_mask, (t // n_blocks) * BM, wgu_ptr, wgu_desc, cols, nb * BN,
                         I + nb * BN, tl.zeros((BM, BN), tl.float32), tl.zeros((BM, BN), tl.float32), D, PRECISION,
                         BK, TMA)
        g = (g * rstd[:, None]).to(a_ptr.dtype.element_ty).to(tl.float32)
        u = (u * rstd[:, None]).to(a_ptr.dtype.element_ty).to(tl.float32)
        a = (g * tl.sigmoid(g) * u).to(a_ptr.dtype.element_ty)
        tl.store(a_ptr + rows[:, None] * I + (nb * BN + cols)[None, :], a, mask=row_mask[:, None])


@triton.jit
def _down_phase(a_ptr, wd_ptr, a_desc, wd_desc, part_ptr, M, pid, nprog, D: tl.constexpr, I: tl.constexpr,
                SPLIT: tl.constexpr, PRECISION: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, TMA: tl.constexpr):
    # part[s] = a[:, s-th K slice] W_down[:, s-th K slice]^T in fp32: split along K where the output tiles alone
    # would leave most SMs idle (16 tiles of 24 dependent K steps at batch 1); phase F sums the slices in order
    n_blocks: tl.constexpr = D // BM
    K_SLICE: tl.constexpr = I // SPLIT
    cols = tl.arange(0, BM)
    for t in range(pid, tl.cdiv(M, BM) * n_blocks * SPLIT, nprog):
        s = t % SPLIT
        tile = t // SPLIT
        rows = (tile // n_blocks) * BM + tl.arange(0, BM)
        n = (tile % n_blocks) * BM + cols
        row_mask = rows < M
        acc = tl.zeros((BM, BM), tl.float32)
        if TMA:
            acc = _dot_tiles(a_desc, (tile // n_blocks) * BM, s * K_SLICE, wd_desc, (tile % n_blocks) * BM,
                             s * K_SLICE, K_SLICE, acc, PRECISION, BK)
        else:
            acc = _dot_rows(a_ptr + s * K_SLICE, I, rows, row_mask, wd_ptr + s * K_SLICE, I, n, K_SLICE, acc,
                            PRECISION, BK)
        tl.store(part_ptr + s * M * D + rows[:, None] * D + n[None, :], acc, mask=row_mask[:, None])


@triton.jit
def _residual_norm_phase(part_ptr, s1_ptr, ss_ptr, out_ptr, M, eps, pid, nprog, D: tl.constexpr,
                         SPLIT: tl.constexpr, BN: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr):
    # out = round(rms_norm(round(h1 + round(sum of the K slices)))), h1 = round(s1 / rms) made here from phase C's
    # sums of squares
    cols = tl.arange(0, BD)
    for t in range(pid, tl.cdiv(M, BR), nprog):
        rows = t * BR + tl.arange(0, BR)
        mask = (rows < M)[:, None] & (cols < D)[None, :]
        offs = rows[:, None] * D + cols[None, :]
        acc = tl.zeros((BR, BD), tl.float32)
        for s in tl.static_range(SPLIT):
            acc += tl.load(part_ptr + s * M * D + offs, mask=mask, other=0.0, cache_modifier=".cg")
        rstd1 = _row_rstd(ss_ptr, rows, rows < M, eps, D, BN)
        res = tl.load(s1_ptr + offs, mask=mask, other=0.0, cache_modifier=".cg").to(tl.float32)
        res = (res * rstd1[:, None]).to(out_ptr.dtype.element_ty).to(tl.float32)
        x = (res + acc.to(out_ptr.dtype.element_ty).to(tl.float32)).to(out_ptr.dtype.element_ty).to(tl.float32)
        rstd = tl.rsqrt(tl.sum(x * x, 1) / D + eps)
        tl.store(out_ptr + offs, (x * rstd[:, None]).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _small_layer_kernel(h_ptr, wqkv_ptr, wo_ptr, wgu_ptr, wd_ptr, cos_ptr, sin_ptr, stride_cos, stride_sin,
                        qkv_ptr, attn_ptr, s1_ptr, ss_ptr, a_ptr, part_ptr, out_ptr, sync_ptr, h_desc, wqkv_desc,
                        attn_desc, wo_desc, s1_desc, wgu_desc, a_desc, wd_desc, B, S, eps,
                        qk_scale, H: tl.constexpr, D: tl.constexpr, I: tl.constexpr, HD: tl.constexpr,
                        BS: tl.constexpr, USE_ROPE: tl.constexpr, EQUAL_HALVES: tl.constexpr, PRECISION: tl.constexpr,
                        PHASE: tl.constexpr, SPLIT: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                        BQ: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, WORK: tl.constexpr, TMA: tl.constexpr):
    # PHASE -1: all six with grid barriers (one program per SM at most); 0..5: that phase alone. WORK False
    # skips every phase's work, leaving the launches and barriers alone to be timed. TMA: the GEMM phases' tiles
    # come through the tensor memory accelerator (the *_desc, None otherwise) instead of each thread's loads
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    M = B * S
    if WORK and (PHASE < 0 or PHASE == 0):
        _qkv_rope_phase(h_ptr, wqkv_ptr, h_desc, wqkv_desc, cos_ptr, sin_ptr, stride_cos, stride_sin, qkv_ptr, M, S,
                        pid, nprog, H, D, HD, USE_ROPE, EQUAL_HALVES, PRECISION, BM, BK, TMA)
    if PHASE < 0:
        _grid_sync(sync_ptr, nprog, TMA)
    if WORK and (PHASE < 0 or PHASE == 1):
        _attention_phase(qkv_ptr, attn_ptr, B, S, qk_scale, pid, nprog, H, D, HD, PRECISION, BS, BQ)
    if PHASE < 0:
        _grid_sync(sync_ptr, 2 * nprog, TMA)
    if WORK and (PHASE < 0 or PHASE == 2):
        _o_residual_phase(attn_ptr, wo_ptr, attn_desc, wo_desc, h_ptr, s1_ptr, ss_ptr, M, pid, nprog, D, PRECISION,
                          BM, BN, BK, TMA)
    if PHASE < 0:
        _grid_sync(sync_ptr, 3 * nprog, TMA)
    if WORK and (PHASE < 0 or PHASE == 3):
        _norm_swiglu_phase(s1_ptr, ss_ptr, wgu_ptr, s1_desc, wgu_desc, a_ptr, M, eps, pid, nprog, D, I, PRECISION,
                           BM, BN, BK, TMA)
    if PHASE < 0:
        _grid_sync(sync_ptr, 4 * nprog, TMA)
    if WORK and (PHASE < 0 or PHASE == 4):
        _down_phase(a_ptr, wd_ptr, a_desc, wd_desc, part_ptr, M, pid, nprog, D, I, SPLIT, PRECISION, BM, BK, TMA)
    if PHASE < 0:
        _grid_sync(sync_ptr, 5 * nprog, TMA)
    if WORK and (PHASE < 0 or PHASE == 5):
        _residual_norm_phase(part_ptr, s1_ptr, ss_ptr, out_ptr, M, eps, pid, nprog, D, SPLIT, BN, BR, BD)
    if PHASE < 0:
        # every program has passed the last barrier once all have arrived here: the last one zeroes the counters
        if tl.atomic_add(sync_ptr + 1, 1, sem="acq_rel", scope="gpu") == nprog - 1:
            tl.atomic_xchg(sync_ptr, 0, sem="relaxed", scope="gpu")
            tl.atomic_xchg(sync_ptr + 1, 0, sem="relaxed", scope="gpu")


_sync = {}  # one pair of counters per device, zero between launches (the kernel leaves them so)


def _counters(device: torch.device) -> torch.Tensor:
    if device not in _sync:
        _sync[device] = torch.zeros(2, dtype=torch.int32, device=device)
    return _sync[device]


def _split(down_tiles: int, k_steps: int, sms: int) -> int:
    """Phase E's K split: the largest of 8, 4 and 2 that divides its K steps and keeps its units within one wave of
    the SMs; 1 where its output tiles alone fill them (batch 8 and up at sudoku_attn's shape)."""
    return next((s for s in (8, 4, 2) if k_steps % s == 0 and down_tiles * s <= sms), 1)


def _tiles(batch: int, positions: int, num_heads: int, width: int, inner: int, meta: dict) -> list[int]:
    """Each phase's count of tiles (or units)."""
    bm = meta["BM"]
    row_blocks = triton.cdiv(batch * positions, bm)
    return [row_blocks * 3 * num_heads, batch * num_heads * triton.cdiv(positions, meta["BQ"]),
            row_blocks * width // meta["BN"], row_blocks * inner // meta["BN"],
            row_blocks * width // bm * meta["SPLIT"], triton.cdiv(batch * positions, meta["BR"])]


def resident_unsupported(per_sm: int, num_warps: int, shared_bytes: int, sm_shared_bytes: int) -> str | None:
    """Why `per_sm` programs of `num_warps` warps and `shared_bytes` of shared memory each may not all be resident
    on one SM at once, or None. Registers are not known before the kernel loads, so they are bounded instead: 8
    warps of 255 registers a thread fill an SM's 64 K exactly; each program also takes 1 KiB the driver keeps."""
    if per_sm * num_warps > 8:
        return f"{per_sm} programs of {num_warps} warps need not fit an SM's registers (at most 8 warps an SM)"
    if per_sm * (shared_bytes + 1024) > sm_shared_bytes:
        return (f"{per_sm} programs of {shared_bytes} B of shared memory (and 1 KiB each the driver keeps) do not "
                f"fit an SM's {sm_shared_bytes} B")
    return None


def launches(h: torch.Tensor, w_qkv: torch.Tensor, w_o: torch.Tensor, w_gu: torch.Tensor, w_down: torch.Tensor,
             cos, sin, num_heads: int, eps: float, config: dict | None = None):
    """The layer's output (allocated, not yet written), the kernel's arguments, its meta-parameters and each
    phase's tile count for one call, and the most programs the persistent grid may hold (all resident at once, as
    its barriers need). `config` overrides the tiles (BM rows; BN columns of phases C and D; BK, BQ, BR), phase E's
    K split (SPLIT), the launch (num_warps, num_stages), TMA (True: the GEMM phases load their tiles through the
    tensor memory accelerator, Hopper's; not yet timed, so off by default), PER_SM (programs an SM holds, 1 by
    default: 2 puts twice the warps on an SM where a phase has more tiles than SMs; a ValueError where they may not
    fit, see resident_unsupported), and WORK (False: the phases do nothing, so that a benchmark times the launches
    and barriers alone; the output is then garbage)."""
    batch, positions, width = h.shape
    inner = w_down.shape[1]
    head_dim = width // num_heads
    rows = batch * positions
    sms = torch.cuda.get_device_properties(h.device).multi_processor_count if h.is_cuda else SMS_WITHOUT_GPU
    block_s = max(16, triton.next_power_of_2(positions))
    meta = dict(BM=BLOCK, BN=BLOCK, BK=K_STEP, BQ=min(QUERY_ROWS, block_s), BR=NORM_ROWS,
                WORK=True, TMA=False, **LAUNCH)
    meta.update(config or {})
    per_sm = meta.pop("PER_SM", 1)
    if "SPLIT" not in meta:
        meta["SPLIT"] = _split(triton.cdiv(rows, meta["BM"]) * width // meta["BM"], inner // meta["BK"], sms)
    tiles = _tiles(batch, positions, num_heads, width, inner, meta)
    scratch = lambda n, dtype=h.dtype: torch.empty((rows, n), dtype=dtype, device=h.device)  # noqa: E731
    qkv, attn, s1, a = scratch(3 * width), scratch(width), scratch(width), scratch(inner)
    ss = scratch(width // meta["BN"], torch.float32)
    part = torch.empty((meta["SPLIT"], rows, width), dtype=torch.float32, device=h.device)
    out = torch.empty_like(h)
    use_rope = cos is not None
    if not use_rope:
        cos = sin = h  # never read: USE_ROPE=False compiles the loads away
    descs = [None] * 8
    if meta["TMA"]:  # each GEMM phase's row tiles and weight tiles (phase A's a head's half, both halves in turn)
        for name, t in (("h", h), ("w_qkv", w_qkv), ("w_o", w_o), ("w_gu", w_gu), ("w_down", w_down)):
            if t.data_ptr() % 16:  # a descriptor's base must be; a view of a larger tensor may start anywhere
                raise ValueError(f"small_layer: TMA needs {name} to start at a 16-byte aligned address, got "
                                 f"{t.data_ptr():#x}")
        bm, bk = meta["BM"], meta["BK"]
        descs = [TensorDescriptor.from_tensor(t, block) for t, block in (
            (h.view(rows, width), [bm, bk]), (w_qkv, [head_dim // 2, bk]), (attn, [bm, bk]), (w_o, [meta["BN"], bk]),
            (s1, [bm, bk]), (w_gu, [meta["BN"], bk]), (a, [bm, bk]), (w_down, [bm, bk]))]
    args = (h, w_qkv, w_o, w_gu, w_down, cos, sin, cos.stride(0) if use_rope else 0, sin.stride(0) if use_rope else 0,
            qkv, attn, s1, ss, a, part, out, _counters(h.device), *descs, batch, positions, eps,
            1.4426950408889634 / head_dim**0.5)
    meta.update(H=num_heads, D=width, I=inner, HD=head_dim, BS=block_s, USE_ROPE=use_rope,
                EQUAL_HALVES=use_rope and equal_halves(cos, sin), BD=triton.next_power_of_2(width),
                PRECISION="ieee" if h.dtype == torch.float32 else "tf32")
    if per_sm > 1 and h.is_cuda and not interpreting():  # compiled (not launched) to read its shared memory
        shared = _small_layer_kernel.warmup(*args, grid=(1,), PHASE=-1, **meta).metadata.shared
        props = torch.cuda.get_device_properties(h.device)
        why = resident_unsupported(per_sm, meta["num_warps"], shared,
                                   getattr(props, "shared_memory_per_multiprocessor", 233472))
        if why:
            raise ValueError(f"small_layer: PER_SM={per_sm}: {why}")
    return out, args, meta, tiles, per_sm * sms


def small_layer(h: torch.Tensor, w_qkv: torch.Tensor, w_o: torch.Tensor, w_gu: torch.Tensor, w_down: torch.Tensor,
                cos, sin, num_heads: int, eps: float, persistent: bool | None = None,
                config: dict | None = None) -> torch.Tensor:
    """The post-norm attention layer of trm_fast.models.layers.Block on h (B, S, D): rms_norm(h1 + MLP(h1)) with
    h1 = rms_norm(h + attention(h)). Inputs are those trm_fast.ops.small_layer.unsupported accepts. `persistent`:
    True one launch with grid barriers (a GPU), False the six phases as six launches; None: persistent on a GPU
    (not under the interpreter). `config`: as `launches` takes it."""
    if persistent is None:
        persistent = h.is_cuda and not interpreting()
    out, args, meta, tiles, slots = launches(h, w_qkv, w_o, w_gu, w_down, cos, sin, num_heads, eps, config)
    if persistent:
        _small_layer_kernel[(min(max(tiles), slots),)](*args, PHASE=-1, **meta)
    else:
        for phase, count in enumerate(tiles):
            _small_layer_kernel[(count,)](*args, PHASE=phase, **meta)
    return out
