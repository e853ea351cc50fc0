"""MLP-t's token mix in h's own layout, in one Triton kernel: y = rms_norm over positions of
(h + W_down swiglu(W_gu h)).

The official model mixes positions on the transposed view h^T (B, D, S): a SwiGLU MLP along its last axis
(width S, inner width I), a residual add and an RMSNorm over that axis, then the transpose back. Per puzzle
b the same thing is two GEMMs with the weights on the left, in h's (B, S, D) layout:
    g = round(W_gu[:I] @ h[b]),  u = round(W_gu[I:] @ h[b])           (I, D); round: to h's dtype
    a[b] = round(g * sigmoid(g) * u)                                    (I, D), fp32 math
    d = round(W_down @ a[b]);  s = h[b] + d                             (S, D), the add in fp32
    y[b][:, c] = round(s[:, c] / sqrt(mean_positions s[:, c]^2 + eps))  one norm per column c
A program owns all S positions (BLOCK_S >= S: positions are few, 97 for Sudoku) of a BLOCK_D column block of
one puzzle and runs both GEMMs back to back, as flash attention runs QK^T and PV: per BLOCK_I rows of the
inner width, gate and up (K = the positions), SwiGLU's block in registers, and the down projection's
accumulation of it. a, d and s never reach memory, nor does a transposed copy of h; each column's sum of
squares stays in the program.

Shapes: h (B, S, D) with any strides; W_gu (2I, S) and W_down (S, I) as nn.Linear stores them, unit stride on
their last axis; y (B, S, D) contiguous, rstd (B, D) fp32; one dtype; S <= MAX_POSITIONS.

Floor per call (sudoku_mlpt, batch 768, S 97, D 512, I 512, bf16): 2 B D (2 I S + S I) = 117 GFLOP, 155 GFLOP
as the tiles compute it (S pads to 128: K of the first GEMM, M of the second): 148 us (196 us padded) at
~790 TFLOP/s. Bytes: h read and y written, 152 MB, 36 us at the H200's ~4.2 TB/s: compute-bound. The weights
(384 KB, padded) come from L2 once per program. The official order moves about 3 GB for the same call (a
transposed h, the gate_up activation and the SwiGLU product written and read back, the projection's output).
A version in two kernels, a through memory, took 2.31 ms where this one took 0.70 ms on an H100 (bench/NOTES.md).
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from ..backend import interpreting
from . import tma_gemm

MAX_POSITIONS = 256  # a program holds BLOCK_S >= S rows of fp32 accumulators
# The TMA kernel (`_token_mix_tma_kernel`) by default where it loads. One H100 call at sudoku_mlpt's batch 768
# (bench/NOTES.md): 659 against the pointer kernel's 702 us alone, 941.8 against 975.1 ms for the engine's 16-step
# evaluation. An experiment may turn it off (bench/engine_ops.py --token-mix-pointer).
TMA_BY_DEFAULT = True


def _configs(tiles, pre_hook=None):
    """Autotuner configs from (BLOCK_I, BLOCK_D, warps, stages) tiles; under the CPU interpreter one small tile, so
    that the tests cross several column blocks and inner-width steps (autotuning would run every config through
    numpy)."""
    if interpreting():
        tiles = [(16, 32, 4, 1)]
    return [triton.Config({"BLOCK_I": bi, "BLOCK_D": bd}, num_warps=w, num_stages=st, pre_hook=pre_hook)
            for bi, bd, w, st in tiles]


# Timed one config at a time on an H100 at sudoku_mlpt's batch 768 (bench/NOTES.md): (128, 64, 8, 2) 705 us, (64,
# 64, 4, 2) 1.09 ms, most others 0.7-1.5 ms; (64, 64, 4, 1) 652 us, but (64, 32, 4, 1) faults with an illegal
# address under Triton 3.6 although every load and store is masked or clamped in bounds, so no one-stage tile is
# listed until compute-sanitizer has run on one. The list is the one the sanitizer and the engine ran.
@triton.autotune(configs=_configs([(64, 64, 4, 2), (64, 128, 8, 2), (32, 128, 8, 2), (64, 64, 8, 2), (32, 64, 4, 2),
                                   (128, 64, 8, 2)]),
                 key=["S", "I", "D", "ELEMENT_SIZE"])
@triton.jit
def _token_mix_kernel(wgu_ptr, stride_wgu, wd_ptr, stride_wd, h_ptr, stride_hb, stride_hs, stride_hd, y_ptr, rstd_ptr,
                      S, I, D, ELEMENT_SIZE, eps, INPUT_PRECISION: tl.constexpr, BLOCK_S: tl.constexpr,
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


def _set_block_shapes(nargs):
    """Pre-hook: each descriptor's block from the config's BLOCK_I and BLOCK_D and the launch's BLOCK_S."""
    bs, bi, bd = nargs["BLOCK_S"], nargs["BLOCK_I"], nargs["BLOCK_D"]
    nargs["wgu_desc"].block_shape = [bi, bs]
    nargs["wd_desc"].block_shape = [bs, bi]
    nargs["h_desc"].block_shape = nargs["y_desc"].block_shape = [1, bs, bd]


# compiled for sm_90a here (bench/kernel_resources.py, Triton 3.9): no spills but at (64, 128, 8, 2), 120-224 KiB
# of shared memory (one program per SM); (128, 128, 8, 2) needs 256 KiB and is left out
@triton.autotune(configs=_configs([(64, 64, 4, 2), (64, 128, 8, 2), (128, 64, 8, 2), (64, 64, 8, 3), (64, 64, 4, 3)],
                                  pre_hook=_set_block_shapes),
                 key=["S", "I", "D", "ELEMENT_SIZE"])
@triton.jit
def _token_mix_tma_kernel(wgu_desc, wd_desc, h_desc, y_desc, rstd_ptr, S, I, D, ELEMENT_SIZE, eps,
                          INPUT_PRECISION: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_I: tl.constexpr,
                          BLOCK_D: tl.constexpr):
    # `_token_mix_kernel` with every block loaded by the tensor memory accelerator, which the pipeliner can run
    # ahead of the dots without registers (the pointer kernel's loads went through 255-register threads and
    # spilled, bench/NOTES.md). The descriptors zero-fill what lies past their tensors: h is (B, S, D), so a
    # block of BLOCK_S positions stops at its own puzzle's last one, and the down weight's rows past S are zeros;
    # the store clips the same rows. BLOCK_I divides I (the launcher checks), so gate rows never read up rows.
    b = tl.program_id(1)
    d0 = tl.program_id(0) * BLOCK_D
    x = h_desc.load([b, 0, d0]).reshape(BLOCK_S, BLOCK_D)
    acc = tl.zeros((BLOCK_S, BLOCK_D), dtype=tl.float32)
    for i0 in range(0, I, BLOCK_I):
        g = tl.dot(wgu_desc.load([i0, 0]), x, input_precision=INPUT_PRECISION)
        u = tl.dot(wgu_desc.load([I + i0, 0]), x, input_precision=INPUT_PRECISION)
        g = g.to(y_desc.dtype).to(tl.float32)
        u = u.to(y_desc.dtype).to(tl.float32)
        a = (g * tl.sigmoid(g) * u).to(y_desc.dtype)
        acc = tl.dot(wd_desc.load([0, i0]), a, acc, input_precision=INPUT_PRECISION)
    # rows past S are zeros on both sides of the add (zero-filled x, zero-filled weight rows): they add nothing
    s = acc.to(y_desc.dtype).to(tl.float32) + x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(s * s, 0) / S + eps)
    y_desc.store([b, 0, d0], (s * rstd[None, :]).to(y_desc.dtype).reshape(1, BLOCK_S, BLOCK_D))
    offs_d = d0 + tl.arange(0, BLOCK_D)
    tl.store(rstd_ptr + b * D + offs_d, rstd, mask=offs_d < D)


def _tma_loadable(h: torch.Tensor, down_weight: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether the TMA kernel takes these: at most 128 positions (its tiles' staged blocks of 256 would not fit
    shared memory), contiguous h and y with 16-byte aligned addresses (their strides are then multiples of D, a
    multiple of 8), D a multiple of 8, the down weight row-major and aligned, I a multiple of every BLOCK_I (128),
    and a Hopper or newer GPU (the interpreter too)."""
    positions, width, inner = h.shape[1], h.shape[2], down_weight.shape[1]
    if not (h.is_contiguous() and y.is_contiguous() and down_weight.is_contiguous()) or width % 8 or inner % 128:
        return False
    if positions > 128:
        return False
    if any(t.data_ptr() % 16 for t in (h, y, down_weight)):
        return False
    return h.device.type != "cuda" or torch.cuda.get_device_properties(h.device).major >= 9


def _precision(h: torch.Tensor) -> str:
    return "ieee" if h.dtype == torch.float32 else "tf32"  # fp32: exact dots, not TF32's


def token_mix(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
              out: torch.Tensor | None = None, tma: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): y (B, S, D) = rms_norm over positions of h + W_down swiglu(W_gu h), per puzzle, and rstd (B, D),
    fp32, each column's 1 / rms, for h (B, S, D) with any strides, gate_up_weight (2I, S) and down_weight (S, I)
    with unit stride on their last axis, one dtype, S <= MAX_POSITIONS (the caller checks:
    trm_fast.ops.token_mix); `out`, if given, a contiguous (B, S, D) tensor of h's dtype for y. One kernel:
    `tma` True the TMA one (raises where `_tma_loadable` says no), False the pointer one, None the TMA one where
    it loads if TMA_BY_DEFAULT, else the pointer one."""
    batch, positions, width = h.shape
    y = torch.empty((batch, positions, width), dtype=h.dtype, device=h.device) if out is None else out
    rstd = torch.empty((batch, width), dtype=torch.float32, device=h.device)
    if y.numel() == 0:
        return y, rstd
    block_s = max(16, triton.next_power_of_2(positions))
    padded = torch.nn.functional.pad(gate_up_weight, (0, block_s - positions))  # zero columns up to BLOCK_S
    loadable = (tma or (tma is None and TMA_BY_DEFAULT)) and _tma_loadable(h, down_weight, y)
    if tma and not loadable:
        raise ValueError("tma=True needs at most 128 positions, contiguous, 16-byte aligned h, y and down weight, D a "
                         "multiple of 8, I a multiple of 128, and a Hopper or newer GPU")
    grid = lambda m: (triton.cdiv(width, m["BLOCK_D"]), batch)  # noqa: E731
    if loadable:
        tma_gemm.ensure_context(h.device)  # its grid is its own, not tma_gemm.grid
        unset = [1, 1]  # the pre-hook sets each descriptor's block from the tile config
        descs = [TensorDescriptor.from_tensor(t, unset if t.ndim == 2 else [1, 1, 1])
                 for t in (padded, down_weight, h, y)]
        _token_mix_tma_kernel[grid](*descs, rstd, positions, down_weight.shape[1], width, h.element_size(), eps,
                                    INPUT_PRECISION=_precision(h), BLOCK_S=block_s)
        return y, rstd
    _token_mix_kernel[grid](
        padded, padded.stride(0), down_weight, down_weight.stride(0), h, *h.stride(), y, rstd, positions,
        down_weight.shape[1], width, h.element_size(), eps, INPUT_PRECISION=_precision(h), BLOCK_S=block_s)
    return y, rstd
