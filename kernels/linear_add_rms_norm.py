"""A projection with the residual add and the RMSNorm in its epilogue, in Triton: the post-norm block's
attention output projection and MLP down projection, y = rms_norm(residual + x W^T).

Math, per row m (fp32 accumulation, then as the unfused model rounds):
    d[m, n] = round(sum_k x[m, k] w[n, k])                       (round: to x's dtype, as F.linear)
    s[m, n] = residual[m, n] + d[m, n]                           (fp32, as the fused add + RMSNorm adds)
    y[m, n] = round(s[m, n] / sqrt(mean_n s[m, n]^2 + eps))
A program owns BLOCK_M whole rows: the row's N <= 512 outputs are two column blocks of BLOCK_N (a TMA box
holds at most 256 columns), accumulated side by side on one x tile per K step (tma_gemm.two_blocks), so the
norm's row sum never leaves the program and neither the projection's output nor the pre-norm sum reaches
memory. The unfused model writes the projection, then reads it with the residual and writes y: 2 M N
elements more.

Shapes: x (B, R, K) row-major with 16-byte aligned rows; w (N, K) as nn.Linear stores it; residual and y
(B, R, N) contiguous; all in one dtype; N <= 512. TRM: the o projection (K = N = 512) and the down
projection (K = 1536, N = 512).

Floor per call: 2 M N K FLOPs; bytes: x and residual read, y written, 2 M (K + 2 N) in bf16 (the weight from
L2). sudoku_attn, batch 768 (M 74,496): o projection 39.1 GFLOP and 229 MB, down 117.2 GFLOP and 381 MB,
against unfused extras of 153 MB each (the projection's output written and read back, once more read as
the pre-norm sum's input: 2 M N elements). Measured on an H200 it loses to the unfused pair: 173 TFLOP/s
on the o projection, 271 on the down projection (bench/NOTES.md).
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from ..backend import interpreting
from . import tma_gemm


def _set_block_shapes(nargs):
    """Pre-hook: x, w and y as tma_gemm sets them, and the residual's block as y's (BLOCK_N and BLOCK_K come
    from the launch, BLOCK_M from the config)."""
    tma_gemm.set_block_shapes(nargs)
    nargs["r_desc"].block_shape = [nargs["BLOCK_M"], nargs["BLOCK_N"]]


def _configs():
    """(BLOCK_M, warps, stages, programs per SM); BLOCK_N and BLOCK_K come from the shape. Each program holds
    BLOCK_M x 2 BLOCK_N fp32 accumulators: 64 x 512 is 128 registers a thread at 8 warps."""
    # compiled for sm_90a (bench/kernel_resources.py): 64 rows in 8 warps take ~190-230 registers and 176 KiB
    # at 2 stages (3 do not fit); 4 warps on 64 rows, or 8 on 128, spill a KB a thread. 32 rows in 4 warps at
    # 2 stages (84 KiB) run two programs per SM.
    tiles = [(32, 4, 1, 1)] if interpreting() else [(64, 8, 2, 1), (32, 4, 3, 1), (32, 8, 3, 1), (32, 4, 2, 2)]
    return [triton.Config({"BLOCK_M": bm, "CTAS": ctas}, num_warps=w, num_stages=s, pre_hook=_set_block_shapes)
            for bm, w, s, ctas in tiles]


def _prune(configs, named_args, **kwargs):
    """Tiles that fit shared memory (x and two weight blocks per stage, and one BLOCK_M x BLOCK_N block staged
    for the residual's loads and y's stores: 176 KiB at 64 rows and 2 stages, as the compiler counts), no
    taller than the rows."""
    # the autotuner hands the launch's keyword arguments (BLOCK_N, BLOCK_K) apart from the positional ones
    size, bn, bk = named_args["ELEMENT_SIZE"], kwargs["BLOCK_N"], kwargs["BLOCK_K"]

    def fits(c):
        bm = c.kwargs["BLOCK_M"]
        return tma_gemm.fits_shared_bytes((c.num_stages * (bm * bk + 2 * bn * bk) + bm * bn) * size, c.kwargs["CTAS"])

    # the last tile, the smallest, runs where none fits (fp32 at N 512: it then holds one program per SM)
    return tma_gemm.prune_rows([c for c in configs if fits(c)] or configs[-1:], named_args["M"])


@triton.autotune(configs=_configs(), key=["M", "N", "K", "ELEMENT_SIZE"],
                 prune_configs_by={"early_config_prune": _prune}, do_bench=tma_gemm.bench)
@triton.jit
def _linear_add_rms_norm_kernel(x_desc, w_desc, r_desc, y_desc, M, N, K, ELEMENT_SIZE, eps,
                                INPUT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                                BLOCK_M: tl.constexpr, CTAS: tl.constexpr):
    # Persistent (kernels/tma_gemm.py) over row blocks; columns past N (weight rows and residual columns read
    # as zeros) add nothing to the row's sum of squares and are clipped from the store.
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.num_programs(0)):
        off_m = tile * BLOCK_M
        acc_a, acc_b = tma_gemm.two_blocks(x_desc, w_desc, off_m, 0, BLOCK_N, K, INPUT_PRECISION, BLOCK_M, BLOCK_N,
                                           BLOCK_K)
        s_a = acc_a.to(y_desc.dtype).to(tl.float32) + r_desc.load([off_m, 0]).to(tl.float32)
        s_b = acc_b.to(y_desc.dtype).to(tl.float32) + r_desc.load([off_m, BLOCK_N]).to(tl.float32)
        rstd = tl.rsqrt((tl.sum(s_a * s_a, 1) + tl.sum(s_b * s_b, 1)) / N + eps)
        y_desc.store([off_m, 0], (s_a * rstd[:, None]).to(y_desc.dtype))
        y_desc.store([off_m, BLOCK_N], (s_b * rstd[:, None]).to(y_desc.dtype))


def loadable(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether the kernel can load these (tma_gemm.tma_rows: row-major, 16-byte aligned, Hopper or newer)."""
    m, n = residual.shape[0] * residual.shape[1], residual.shape[2]
    return tma_gemm.tma_rows(x, weight, residual.view(m, n), out.view(m, n)) is not None


def linear_add_rms_norm(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, eps: float,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """y (B, R, N) = rms_norm(residual + x @ weight.T) for x (B, R, K), weight (N, K), residual (B, R, N)
    contiguous, N <= 512; `out`, if given, a contiguous (B, R, N) tensor of x's dtype. Raises ValueError where
    the tensors are not what the TMA kernel loads."""
    b, r, k = x.shape
    n = weight.shape[0]
    if out is None:
        out = torch.empty((b, r, n), dtype=x.dtype, device=x.device)
    m = b * r
    if m == 0:
        return out
    if n > 512 or not residual.is_contiguous() or not out.is_contiguous():
        raise ValueError(f"linear_add_rms_norm needs N <= 512 and contiguous residual and out, got N {n}")
    rows = tma_gemm.tma_rows(x, weight, residual.view(m, n), out.view(m, n))
    if rows is None:
        raise ValueError("linear_add_rms_norm needs x's rows to flatten with unit stride along K, 16-byte aligned "
                         "rows and addresses, and a Hopper or newer GPU")
    block_n = max(16, triton.next_power_of_2(-(-n // 2)))
    block_k = min(64 if x.element_size() == 2 else 32, max(16, triton.next_power_of_2(k)))  # fp32: half
    unset = [1, 1]  # the pre-hook sets each descriptor's block shape from the tile config
    descs = [TensorDescriptor.from_tensor(t, unset) for t in (rows, weight, residual.view(m, n), out.view(m, n))]
    launch = tma_gemm.grid(x.device, lambda meta: triton.cdiv(m, meta["BLOCK_M"]))
    _linear_add_rms_norm_kernel[launch](*descs, m, n, k, x.element_size(), eps,
                                        INPUT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
                                        BLOCK_N=block_n, BLOCK_K=block_k)
    return out
