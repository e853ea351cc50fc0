"""MLP-t's token mix in h's own layout, in Triton: y = rms_norm over positions of (h + W_down swiglu(W_gu h)).

The official model mixes positions on the transposed view h^T (B, D, S): a SwiGLU MLP along its last axis
(width S, inner width I), a residual add and an RMSNorm over that axis, then the transpose back. Per puzzle
b the same thing is two GEMMs with the weights on the left, in h's (B, S, D) layout:
    g = round(W_gu[:I] @ h[b]),  u = round(W_gu[I:] @ h[b])           (I, D); round: to h's dtype
    a[b] = round(g * sigmoid(g) * u)                                    (I, D), fp32 math
    d = round(W_down @ a[b]);  s = h[b] + d                             (S, D), the add in fp32
    y[b][:, c] = round(s[:, c] / sqrt(mean_positions s[:, c]^2 + eps))  one norm per column c
Two kernels, one per GEMM:
- `_gate_up_swiglu_kernel` owns a BLOCK_I x BLOCK_D tile of a[b]: the gate and up tiles accumulate side by
  side on one tile of h[b] per K step (K = S, the positions), and only a is written: the (B, 2I, D) gate_up
  activation never reaches memory.
- `_down_add_norm_kernel` owns all S rows of a BLOCK_D column block of y[b] (BLOCK_S >= S: positions are few,
  97 for Sudoku), so each column's sum of squares stays in the program: neither d nor s reaches memory.
No transposed copy is made anywhere, and every load is unit-stride along D (h's rows, a's rows).

Shapes: h (B, S, D) with any strides; W_gu (2I, S) and W_down (S, I) as nn.Linear stores them, unit stride on
their last axis; a (B, I, D) and y (B, S, D) contiguous; one dtype; S <= MAX_POSITIONS.

Floor per call (sudoku_mlpt, batch 768, S 97, D 512, I 512, bf16): 2 B D (2 I S + S I) = 117 GFLOP, of which
the tiles compute 31% more where S pads to the dots' 128 (K in the first kernel, M in the second). Bytes: h
read twice and y written, a written and read once: 2 B D (3 S + 2 I) = 1.01 GB (the weights, 300 KB, from L2):
0.24 ms at the H200's ~4.2 TB/s copy rate against 0.15 ms of GEMM at cuBLAS's ~790 TFLOP/s: memory-bound. The
official layout moves a transposed copy of h, the (B, D, 2I) gate_up activation (written, read back) and d
(written, read back with the transposed h), 2.1 GB more.
"""

import torch
import triton
import triton.language as tl

from ..backend import interpreting

MAX_POSITIONS = 256  # the down kernel holds BLOCK_S >= S rows of fp32 accumulators a program
_MAX_BLOCK_K = 64  # the gate/up kernel's largest BLOCK_K: its padded weight's columns are a multiple of it


def _configs(names, tiles, interpreted):
    """Autotuner configs: each tile gives the meta-parameters `names`, then warps and stages; under the CPU
    interpreter the one small tile `interpreted`, so that the tests cross several tiles and K steps (autotuning
    would run every config through numpy)."""
    if interpreting():
        tiles = [interpreted]
    return [triton.Config(dict(zip(names, tile)), num_warps=tile[-2], num_stages=tile[-1]) for tile in tiles]


@triton.autotune(configs=_configs(("BLOCK_I", "BLOCK_D", "BLOCK_K"),  # and warps, stages
                                  [(64, 128, 32, 4, 3), (64, 128, 64, 8, 2), (128, 64, 32, 8, 3), (64, 64, 32, 4, 3),
                                   (128, 128, 32, 8, 3), (32, 128, 32, 4, 3)], interpreted=(16, 32, 16, 4, 1)),
                 key=["S", "I", "D", "ELEMENT_SIZE"])
@triton.jit
def _gate_up_swiglu_kernel(w_ptr, stride_wr, h_ptr, stride_hb, stride_hs, stride_hd, a_ptr, B, S, I, D, ELEMENT_SIZE,
                           INPUT_PRECISION: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_D: tl.constexpr,
                           BLOCK_K: tl.constexpr):
    # program (tile, b): tiles of one puzzle are neighbours, so its h[b] is read from L2 by all but the first
    tiles_d = tl.cdiv(D, BLOCK_D)
    b = tl.program_id(1).to(tl.int64)
    offs_i = (tl.program_id(0) // tiles_d) * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_d = (tl.program_id(0) % tiles_d) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, BLOCK_K)
    rows = tl.where(offs_i < I, offs_i, 0)  # clamped: rows past I load a real row, never stored
    cols = tl.where(offs_d < D, offs_d, 0)
    acc_g = tl.zeros((BLOCK_I, BLOCK_D), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_I, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, S, BLOCK_K):
        k = k0 + offs_k
        # the weight's columns past S are zeros (the launcher pads its rows to whole BLOCK_Ks, 16-byte aligned, so
        # these loads need no mask and vectorise); h's rows past S are masked to zeros too (another puzzle's)
        wg = tl.load(w_ptr + rows[:, None] * stride_wr + k[None, :])
        wu = tl.load(w_ptr + (rows + I)[:, None] * stride_wr + k[None, :])
        x = tl.load(h_ptr + b * stride_hb + k[:, None] * stride_hs + cols[None, :] * stride_hd, mask=k[:, None] < S,
                    other=0.0)
        acc_g = tl.dot(wg, x, acc_g, input_precision=INPUT_PRECISION)
        acc_u = tl.dot(wu, x, acc_u, input_precision=INPUT_PRECISION)
    # round as the unfused model does: gate_up to its dtype, then SwiGLU in fp32, rounded once
    g = acc_g.to(a_ptr.dtype.element_ty).to(tl.float32)
    u = acc_u.to(a_ptr.dtype.element_ty).to(tl.float32)
    a_ptrs = a_ptr + b * I * D + offs_i[:, None] * D + offs_d[None, :]
    tl.store(a_ptrs, (g * tl.sigmoid(g) * u).to(a_ptr.dtype.element_ty),
             mask=(offs_i[:, None] < I) & (offs_d[None, :] < D))


@triton.autotune(configs=_configs(("BLOCK_D", "BLOCK_K"),  # and warps, stages
                                  [(64, 64, 4, 3), (64, 32, 4, 4), (32, 64, 4, 3), (128, 32, 8, 3), (64, 64, 8, 3),
                                   (32, 32, 4, 4)], interpreted=(32, 16, 4, 1)),
                 key=["S", "I", "D", "ELEMENT_SIZE"])
@triton.jit
def _down_add_norm_kernel(w_ptr, stride_wr, a_ptr, h_ptr, stride_hb, stride_hs, stride_hd, y_ptr, rstd_ptr, B, S, I,
                          D, ELEMENT_SIZE, eps, INPUT_PRECISION: tl.constexpr, BLOCK_S: tl.constexpr,
                          BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr):
    # program (column block, b)
    b = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, BLOCK_K)
    positions = tl.where(offs_s < S, offs_s, 0)  # clamped for the weight's loads; masked where it counts
    cols = tl.where(offs_d < D, offs_d, 0)
    acc = tl.zeros((BLOCK_S, BLOCK_D), dtype=tl.float32)
    for k0 in range(0, I, BLOCK_K):
        k = k0 + offs_k
        w = tl.load(w_ptr + positions[:, None] * stride_wr + k[None, :], mask=k[None, :] < I, other=0.0)
        a = tl.load(a_ptr + b * I * D + k[:, None] * D + cols[None, :], mask=k[:, None] < I, other=0.0)
        acc = tl.dot(w, a, acc, input_precision=INPUT_PRECISION)
    inside = (offs_s[:, None] < S) & (offs_d[None, :] < D)
    h_off = b * stride_hb + offs_s[:, None] * stride_hs + offs_d[None, :] * stride_hd
    # d rounds to the activation dtype as the unfused projection's output does; rows past S are zeros
    s = acc.to(y_ptr.dtype.element_ty).to(tl.float32) + tl.load(h_ptr + h_off, mask=inside, other=0.0).to(tl.float32)
    s = tl.where(inside, s, 0.0)
    rstd = tl.rsqrt(tl.sum(s * s, 0) / S + eps)
    y_ptrs = y_ptr + b * S * D + offs_s[:, None] * D + offs_d[None, :]
    tl.store(y_ptrs, (s * rstd[None, :]).to(y_ptr.dtype.element_ty), mask=inside)
    tl.store(rstd_ptr + b * D + offs_d, rstd, mask=offs_d < D)


@triton.autotune(configs=_configs(("BLOCK_I", "BLOCK_D"),  # and warps, stages
                                  [(64, 64, 4, 2), (64, 128, 8, 2), (32, 128, 8, 2), (64, 64, 8, 2), (32, 64, 4, 2),
                                   (128, 64, 8, 2)], interpreted=(16, 32, 4, 1)),
                 key=["S", "I", "D", "ELEMENT_SIZE"])
@triton.jit
def _token_mix_kernel(wgu_ptr, stride_wgu, wd_ptr, stride_wd, h_ptr, stride_hb, stride_hs, stride_hd, y_ptr, rstd_ptr,
                      B, S, I, D, ELEMENT_SIZE, eps, INPUT_PRECISION: tl.constexpr, BLOCK_S: tl.constexpr,
                      BLOCK_I: tl.constexpr, BLOCK_D: tl.constexpr):
    # Program (column block, b): both GEMMs back to back, as flash attention runs QK^T and PV. h's block (all S
    # positions, BLOCK_D columns) is loaded once; per BLOCK_I rows of the inner width, gate and up come from one
    # dot each (K = the padded positions), SwiGLU makes a's block in registers and the down projection
    # accumulates it at once, so a never reaches memory: HBM sees h read and y written, nothing else.
    b = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_i = tl.arange(0, BLOCK_I)
    positions = tl.where(offs_s < S, offs_s, 0)  # clamped for the down weight's rows; masked where it counts
    inside = (offs_s[:, None] < S) & (offs_d[None, :] < D)
    x = tl.load(h_ptr + b * stride_hb + offs_s[:, None] * stride_hs + offs_d[None, :] * stride_hd, mask=inside,
                other=0.0)
    acc = tl.zeros((BLOCK_S, BLOCK_D), dtype=tl.float32)
    for i0 in range(0, I, BLOCK_I):
        rows = i0 + offs_i
        # the gate/up weight's columns past S are zeros (the launcher pads its rows to BLOCK_S): no mask, and
        # vector loads; x's rows past S are zeros too, so they add nothing
        wg = tl.load(wgu_ptr + rows[:, None] * stride_wgu + offs_s[None, :], mask=rows[:, None] < I, other=0.0)
        wu = tl.load(wgu_ptr + (rows + I)[:, None] * stride_wgu + offs_s[None, :], mask=rows[:, None] < I, other=0.0)
        # round as the unfused model does: gate_up to its dtype, then SwiGLU in fp32, a to its dtype
        g = tl.dot(wg, x, input_precision=INPUT_PRECISION).to(y_ptr.dtype.element_ty).to(tl.float32)
        u = tl.dot(wu, x, input_precision=INPUT_PRECISION).to(y_ptr.dtype.element_ty).to(tl.float32)
        a = (g * tl.sigmoid(g) * u).to(y_ptr.dtype.element_ty)
        wd = tl.load(wd_ptr + positions[:, None] * stride_wd + rows[None, :], mask=rows[None, :] < I, other=0.0)
        acc = tl.dot(wd, a, acc, input_precision=INPUT_PRECISION)
    # the down projection's output rounds to the activation dtype; the residual add in fp32; rows past S are zeros
    s = tl.where(inside, acc.to(y_ptr.dtype.element_ty).to(tl.float32) + x.to(tl.float32), 0.0)
    rstd = tl.rsqrt(tl.sum(s * s, 0) / S + eps)
    tl.store(y_ptr + b * S * D + offs_s[:, None] * D + offs_d[None, :], (s * rstd[None, :]).to(y_ptr.dtype.element_ty),
             mask=inside)
    tl.store(rstd_ptr + b * D + offs_d, rstd, mask=offs_d < D)


def token_mix(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
              out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): y (B, S, D) = rms_norm over positions of h + W_down swiglu(W_gu h), per puzzle, and rstd (B, D),
    fp32, each column's 1 / rms, for h (B, S, D) with any strides, gate_up_weight (2I, S) and down_weight (S, I)
    with unit stride on their last axis, one dtype, S <= MAX_POSITIONS (the caller checks:
    trm_fast.ops.token_mix); `out`, if given, a contiguous (B, S, D) tensor of h's dtype for y. One kernel."""
    batch, positions, width = h.shape
    y = torch.empty((batch, positions, width), dtype=h.dtype, device=h.device) if out is None else out
    rstd = torch.empty((batch, width), dtype=torch.float32, device=h.device)
    if y.numel() == 0:
        return y, rstd
    block_s = max(16, triton.next_power_of_2(positions))
    padded = torch.nn.functional.pad(gate_up_weight, (0, block_s - positions))  # zero columns up to BLOCK_S
    _token_mix_kernel[lambda m: (triton.cdiv(width, m["BLOCK_D"]), batch)](
        padded, padded.stride(0), down_weight, down_weight.stride(0), h, *h.stride(), y, rstd, batch, positions,
        down_weight.shape[1], width, h.element_size(), eps, INPUT_PRECISION=_precision(h), BLOCK_S=block_s)
    return y, rstd


def _precision(h: torch.Tensor) -> str:
    return "ieee" if h.dtype == torch.float32 else "tf32"  # fp32: exact dots, not TF32's


def gate_up_swiglu(h: torch.Tensor, gate_up_weight: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The first kernel: a (B, I, D), contiguous, = swiglu(W_gu h[b]) for each puzzle b."""
    batch, positions, width = h.shape
    inner = a.shape[1]
    # zero columns up to a multiple of the largest BLOCK_K (64): a 2I x 128 copy for Sudoku's 97 positions
    padded = torch.nn.functional.pad(gate_up_weight, (0, (-positions) % _MAX_BLOCK_K))
    _gate_up_swiglu_kernel[lambda m: (triton.cdiv(inner, m["BLOCK_I"]) * triton.cdiv(width, m["BLOCK_D"]), batch)](
        padded, padded.stride(0), h, *h.stride(), a, batch, positions, inner, width, h.element_size(),
        INPUT_PRECISION=_precision(h))
    return a


def down_add_norm(a: torch.Tensor, h: torch.Tensor, down_weight: torch.Tensor, eps: float, y: torch.Tensor,
                  rstd: torch.Tensor):
    """The second kernel: y (B, S, D), contiguous, = rms_norm over positions of h[b] + W_down a[b]; rstd (B, D),
    fp32, contiguous, each column's 1 / rms (for the backward)."""
    batch, positions, width = h.shape
    _down_add_norm_kernel[lambda m: (triton.cdiv(width, m["BLOCK_D"]), batch)](
        down_weight, down_weight.stride(0), a, h, *h.stride(), y, rstd, batch, positions, a.shape[1], width,
        h.element_size(), eps, INPUT_PRECISION=_precision(h), BLOCK_S=max(16, triton.next_power_of_2(positions)))


def token_mix_two_pass(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
                       out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_mix` in two kernels, a through memory (`gate_up_swiglu`, `down_add_norm`)."""
    batch, positions, width = h.shape
    y = torch.empty((batch, positions, width), dtype=h.dtype, device=h.device) if out is None else out
    rstd = torch.empty((batch, width), dtype=torch.float32, device=h.device)
    if y.numel() == 0:
        return y, rstd
    a = torch.empty((batch, down_weight.shape[1], width), dtype=h.dtype, device=h.device)
    down_add_norm(gate_up_swiglu(h, gate_up_weight, a), h, down_weight, eps, y, rstd)
    return y, rstd
