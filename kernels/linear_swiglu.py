"""The MLP's input projection with SwiGLU in its epilogue, in Triton: h = silu(x W_gate^T) * (x W_up^T).

Math, per output element (m, n), n < N (fp32 accumulation, then as the model rounds):
    g = round(sum_k x[m, k] w[n, k]),  u = round(sum_k x[m, k] w[N + n, k])   (round: to x's dtype)
    h[m, n] = round(g * sigmoid(g) * u)                                        (fp32 math)
w is the gate_up projection's weight as the model stores it, (2N, K): rows 0..N-1 make the gate, rows
N..2N-1 the up half, the order of `gate, up = gate_up.chunk(2, -1)`. Each program owns a BLOCK_M x BLOCK_N
tile of h and accumulates the gate and the up tile side by side (two dots per K step on one x tile), so
the (M, 2N) gate_up activation never reaches memory: the unfused model writes it and reads it back in a
separate SwiGLU pass.

Two kernels compute it. The persistent one loads through the tensor memory accelerator (TMA descriptors,
Hopper and newer): one or two programs per SM walk the tiles (kernels/tma_gemm.py: with two, one program's
epilogue overlaps the other's dots); it takes row-major x with 16-byte aligned rows (TRM's MLP). The pointer
kernel takes any strides (MLP-t's transposed x) and any GPU. On an H200 the pointer kernel's tiles ran at
336 TFLOP/s against cuBLAS's 619 at sudoku_attn's shape, too slow to pay for the SwiGLU pass it saves
(bench/NOTES.md); the TMA kernel is how Triton's own persistent matmul approaches cuBLAS on Hopper.

Shapes: x (B, R, K) with any strides, its M = B * R rows flattened in order; w (2N, K) with unit stride
on K; h (B, R, N) contiguous, all in one dtype. TRM's MLP: x (B, S, 512), N = 1536; MLP-t mixes positions
on the transposed view x (B, 512, S) (stride 1 along its rows, 512 along K), N = 512.

Floor per call: 4 M N K FLOPs; bytes: x read and h written once (the weights, 3 MB in bf16, stay in L2):
2 (M K + M N) in bf16. At sudoku_attn's batch 768 (M 74,496): 234 GFLOP and 305 MB: 0.30 ms at 790
TFLOP/s, 0.38 ms at the 619 TFLOP/s cuBLAS reaches at this shape, against 73 us of traffic: compute-bound.
The unfused pair moves 4 M N elements more: the gate_up activation written, then read back.
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from . import tma_gemm


def _pointer_configs():
    """Tiles for the pointer kernel; each program holds two BLOCK_M x BLOCK_N fp32 tiles (gate and up)."""
    return tma_gemm.configs([  # (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages)
        (128, 128, 64, 8, 3), (128, 128, 64, 8, 4), (128, 64, 64, 4, 4), (128, 64, 64, 8, 4),
        (64, 128, 64, 4, 4), (256, 64, 64, 8, 3), (128, 128, 32, 8, 4), (64, 64, 64, 4, 4),
        (32, 64, 64, 4, 3), (16, 64, 128, 4, 3),  # the last two: batch 1 to 8, where M is a few hundred rows
    ], pre_hook=None)


def _prune_pointer(configs, named_args, **kwargs):
    size = named_args["x_ptr"].element_size()
    fit = [c for c in configs if tma_gemm.fits_shared_memory(c, size, b_blocks=2)]
    return tma_gemm.prune_rows(fit, named_args["M"])


@triton.jit
def _swiglu(acc_g, acc_u, out_ty: tl.constexpr):
    """h from the fp32 gate and up tiles, rounded as the unfused model rounds: gate_up to its dtype, then
    SwiGLU in fp32, rounded once."""
    g = acc_g.to(out_ty).to(tl.float32)
    u = acc_u.to(out_ty).to(tl.float32)
    return (g * tl.sigmoid(g) * u).to(out_ty)


# stride_xk in the key: MLP-t's transposed x (stride 1 along the rows) tunes apart from a row-major x
@triton.autotune(configs=_pointer_configs(), key=["M", "N", "K", "stride_xk"],
                 prune_configs_by={"early_config_prune": _prune_pointer}, do_bench=tma_gemm.bench)
@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _linear_swiglu_kernel(x_ptr, w_ptr, h_ptr, M, N, K, R, stride_xb, stride_xr, stride_xk, stride_wn, stride_hm,
                          INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    pid_m, pid_n = tma_gemm.tile_coords(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # rows and columns past the end read row/column 0 instead of being masked (their results are not
    # stored): the K loop then loads without masks where K is a multiple of BLOCK_K (EVEN_K)
    rows = tl.where(offs_m < M, offs_m, 0).to(tl.int64)
    cols = tl.where(offs_n < N, offs_n, 0).to(tl.int64)
    x_rows = (rows // R) * stride_xb + (rows % R) * stride_xr
    x_ptrs = x_ptr + x_rows[:, None] + offs_k[None, :] * stride_xk
    g_ptrs = w_ptr + cols[None, :] * stride_wn + offs_k[:, None]  # (BLOCK_K, BLOCK_N): W_gate^T's tile
    u_ptrs = g_ptrs + N * stride_wn

    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            x = tl.load(x_ptrs)
            wg = tl.load(g_ptrs)
            wu = tl.load(u_ptrs)
        else:
            k_left = K - k * BLOCK_K
            x = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            wg = tl.load(g_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
            wu = tl.load(u_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc_g = tl.dot(x, wg, acc_g, input_precision=INPUT_PRECISION)
        acc_u = tl.dot(x, wu, acc_u, input_precision=INPUT_PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        g_ptrs += BLOCK_K
        u_ptrs += BLOCK_K

    h = _swiglu(acc_g, acc_u, h_ptr.dtype.element_ty)
    h_ptrs = h_ptr + offs_m.to(tl.int64)[:, None] * stride_hm + offs_n[None, :]
    tl.store(h_ptrs, h, mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


@triton.autotune(configs=tma_gemm.persistent_configs(), key=["M", "N", "K", "ELEMENT_SIZE"],
                 prune_configs_by={"early_config_prune": tma_gemm.prune_persistent}, do_bench=tma_gemm.bench)
@triton.jit
def _linear_swiglu_tma_kernel(x_desc, w_desc, y_desc, M, N, K, ELEMENT_SIZE,
                              INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                              BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, CTAS: tl.constexpr):
    # Persistent (kernels/tma_gemm.py). The tensor memory accelerator loads each block (zero past K and M) and
    # stores h (clipped at M and N); a gate tile reaching past column N reads up rows, whose results are clipped.
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N), tl.num_programs(0)):
        pid_m, pid_n = tma_gemm.tile_coords(tile, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        off_m, off_n = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc_g, acc_u = tma_gemm.two_blocks(x_desc, w_desc, off_m, off_n, N, K, INPUT_PRECISION, BLOCK_M, BLOCK_N,
                                           BLOCK_K)
        y_desc.store([off_m, off_n], _swiglu(acc_g, acc_u, y_desc.dtype))


def linear_swiglu(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor | None = None,
                  tma: bool | None = None) -> torch.Tensor:
    """h (B, R, N) = silu(x @ weight[:N].T) * (x @ weight[N:].T) for x (B, R, K) with any strides (MLP-t's
    transposed activations included), weight (2N, K) with unit stride on K; `out`, if given, must be a
    contiguous (B, R, N) tensor of x's dtype. `tma`: the persistent TMA kernel (row-major, 16-byte aligned
    x on Hopper or newer) or the pointer kernel (any strides); None takes TMA where it can run."""
    b, r, k = x.shape
    n = weight.shape[0] // 2
    if out is None:
        out = torch.empty((b, r, n), dtype=x.dtype, device=x.device)
    elif out.shape != (b, r, n) or out.dtype != x.dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {(b, r, n)} tensor of {x.dtype}, got {tuple(out.shape)} "
                         f"{out.dtype}{'' if out.is_contiguous() else ', not contiguous'}")
    m = b * r
    if m == 0 or n == 0:
        return out
    # fp32 operands: true fp32 products, as F.linear gives by default (tl.dot would take TF32 on a GPU)
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    rows = tma_gemm.tma_rows(x, weight, out.view(m, n)) if tma is not False else None
    if tma and rows is None:
        raise ValueError("tma=True needs x's rows to flatten with unit stride along K, 16-byte aligned rows and "
                         "addresses, and a Hopper or newer GPU")
    if rows is not None:
        unset = [1, 1]  # the pre-hook sets each descriptor's block shape from the tile config
        x_desc = TensorDescriptor.from_tensor(rows, unset)
        w_desc = TensorDescriptor.from_tensor(weight, unset)
        y_desc = TensorDescriptor.from_tensor(out.view(m, n), unset)
        launch = tma_gemm.grid(x.device, tma_gemm.tiles(m, n))
        _linear_swiglu_tma_kernel[launch](x_desc, w_desc, y_desc, m, n, k, x.element_size(), INPUT_PRECISION=precision)
        return out
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    _linear_swiglu_kernel[grid](x, weight, out, m, n, k, r, x.stride(0), x.stride(1), x.stride(2), weight.stride(0),
                                n, INPUT_PRECISION=precision)
    return out
