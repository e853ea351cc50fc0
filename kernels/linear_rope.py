"""The attention's QKV projection with the rotary position embedding in its epilogue, in Triton.

Math, per row m (position s = m mod S) and output column c (head c // D, place d = c mod D in the head):
    y[m, c] = round(sum_k x[m, k] w[c, k])                               (fp32 accumulation; round: to x's dtype)
    for the q and k heads (c < ROPE_COLS = 2 H D), in fp32, rounded once:
    y[m, c] = y[m, c] cos[s, d] + rotate_half(y[m, :])[c] sin[s, d],     rotate_half([a | b]) = [-b | a] per head
The v heads keep the projection. This is what the model computes in two passes, F.linear and then RoPE on the
q and k views (trm_fast.ops.rope); fused, the projection's output is written once, rotated, and the RoPE
pass (read q and k, write them back, and in the compiled model a head-major layout copy) disappears.

Shapes: x (B, S, K) row-major with 16-byte aligned rows; w (3 H D, K) as nn.Linear stores it; cos, sin (S, D)
fp32; y (B, S, 3 H, D) contiguous, in x's dtype: the layout the attention takes (q, then k, then v heads).
One persistent TMA kernel (kernels/tma_gemm.py, Hopper and newer). A tile spans whole heads (BLOCK_N a
multiple of D), so that the rotation's partner columns are in the tile: the epilogue splits each head of
the accumulator into its two halves and joins them back swapped, in registers.

Floor per call: 2 M N K FLOPs (N = 3 H D); bytes: x read and y written once, 2 M (K + N) in bf16, the weight
(1.5 MB) and the tables (S D 8 B) from L2. sudoku_attn, batch 768 (M 74,496, K 512, N 1536): 117 GFLOP,
305 MB: 0.15 ms at 790 TFLOP/s, 73 us of traffic at 4.2 TB/s. The unfused RoPE pass moves 4 M H D elements
more (q and k read and written): 153 MB.
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from . import tma_gemm


def _set_block_shapes(nargs):
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["x_desc"].block_shape = [bm, bk]
    nargs["w_desc"].block_shape = [bn, bk]
    nargs["y_desc"].block_shape = [bm, bn]


def _configs():
    return tma_gemm.configs([(128, 128, 64, 8, 3), (128, 128, 64, 8, 4), (128, 256, 64, 8, 3), (128, 64, 64, 4, 4),
                             (64, 128, 64, 4, 4), (64, 64, 64, 4, 4), (64, 64, 32, 4, 3)], pre_hook=_set_block_shapes)


def _prune(configs, named_args, **kwargs):
    """Tiles of whole heads that do not straddle the q/k and v columns, that fit shared memory, and no taller
    than the rows."""
    d, rope_cols = named_args["HEAD_DIM"], named_args["ROPE_COLS"]
    size = named_args["x_desc"].base.element_size()
    fit = [c for c in configs if c.kwargs["BLOCK_N"] % d == 0 and rope_cols % c.kwargs["BLOCK_N"] == 0
           and tma_gemm.fits_shared_memory(c, size, b_blocks=1)]
    return tma_gemm.prune_rows(fit, named_args["M"])


@triton.jit
def _rope(acc, cos_ptr, sin_ptr, off_m, off_n, S, ROPE_COLS, out_ty: tl.constexpr, HEAD_DIM: tl.constexpr,
          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The tile of y from its fp32 accumulator: rounded as F.linear rounds, then (q and k columns) rotated in
    fp32 and rounded once, as the reference's RoPE does."""
    y = acc.to(out_ty).to(tl.float32)
    heads = tl.reshape(y, (BLOCK_M, BLOCK_N // HEAD_DIM, 2, HEAD_DIM // 2))
    first, second = tl.split(tl.permute(heads, (0, 1, 3, 2)))  # each head's halves [a | b]
    partner = tl.reshape(tl.permute(tl.join(-second, first), (0, 1, 3, 2)), (BLOCK_M, BLOCK_N))  # [-b | a]
    rows = off_m + tl.arange(0, BLOCK_M)
    cols = off_n + tl.arange(0, BLOCK_N)
    rotated = (cols < ROPE_COLS)[None, :]  # v tiles load no table entries
    table = (rows % S)[:, None] * HEAD_DIM + (cols % HEAD_DIM)[None, :]
    cos = tl.load(cos_ptr + table, mask=rotated, other=1.0)
    sin = tl.load(sin_ptr + table, mask=rotated, other=0.0)
    return tl.where(rotated, y * cos + partner * sin, y).to(out_ty)


@triton.autotune(configs=_configs(), key=["M", "N", "K", "S", "ROPE_COLS", "HEAD_DIM"],
                 prune_configs_by={"early_config_prune": _prune}, do_bench=tma_gemm.bench)
@triton.jit
def _linear_rope_kernel(x_desc, w_desc, y_desc, cos_ptr, sin_ptr, M, N, K, S, ROPE_COLS, PROGRAMS: tl.constexpr,
                        INPUT_PRECISION: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    # Persistent, the tile loop flattened with the K loop (kernels/tma_gemm.py); the store finds its tile
    # from its own counter, so the next tile's loads do not wait on the epilogue's index arithmetic.
    stored = tl.program_id(0) - PROGRAMS
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BLOCK_M) * tl.cdiv(N, BLOCK_N), PROGRAMS, flatten=True):
        pid_m, pid_n = tma_gemm.tile_coords(tile, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            x = x_desc.load([pid_m * BLOCK_M, k * BLOCK_K])
            acc = tl.dot(x, w_desc.load([pid_n * BLOCK_N, k * BLOCK_K]).T, acc, input_precision=INPUT_PRECISION)
        stored += PROGRAMS
        pid_m, pid_n = tma_gemm.tile_coords(stored, M, N, BLOCK_M, BLOCK_N, GROUP_M)
        off_m, off_n = pid_m * BLOCK_M, pid_n * BLOCK_N
        y_desc.store([off_m, off_n], _rope(acc, cos_ptr, sin_ptr, off_m, off_n, S, ROPE_COLS, y_desc.dtype,
                                           HEAD_DIM, BLOCK_M, BLOCK_N))


def loadable(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether the kernel can load these (tma_gemm.tma_rows: row-major, 16-byte aligned, Hopper or newer)."""
    return tma_gemm.tma_rows(x, weight, out.view(-1, weight.shape[0])) is not None


def linear_rope(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """y (B, S, 3H, D) = x @ weight.T with the q and k heads rotated by position, for x (B, S, K), weight
    (3 H D, K), cos and sin (S, D) fp32 contiguous; `out`, if given, a contiguous (B, S, 3H, D) tensor of x's
    dtype. Raises ValueError where the tensors are not what the TMA kernel loads (`loadable`)."""
    b, s, k = x.shape
    n = weight.shape[0]
    d = n // (3 * num_heads)
    if out is None:
        out = torch.empty((b, s, 3 * num_heads, d), dtype=x.dtype, device=x.device)
    elif out.shape != (b, s, 3 * num_heads, d) or out.dtype != x.dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {(b, s, 3 * num_heads, d)} tensor of {x.dtype}, got "
                         f"{tuple(out.shape)} {out.dtype}{'' if out.is_contiguous() else ', not contiguous'}")
    m = b * s
    if m == 0:
        return out
    rows = tma_gemm.tma_rows(x, weight, out.view(m, n))
    if rows is None:
        raise ValueError("linear_rope needs x's rows to flatten with unit stride along K, 16-byte aligned rows "
                         "and addresses, and a Hopper or newer GPU")
    unset = [1, 1]  # the pre-hook sets each descriptor's block shape from the tile config
    x_desc = TensorDescriptor.from_tensor(rows, unset)
    w_desc = TensorDescriptor.from_tensor(weight, unset)
    y_desc = TensorDescriptor.from_tensor(out.view(m, n), unset)
    programs = tma_gemm.programs(x.device)
    grid = lambda meta: (min(programs, triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])),)  # noqa: E731
    # fp32 operands: true fp32 products, as F.linear gives by default (tl.dot would take TF32 on a GPU)
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    _linear_rope_kernel[grid](x_desc, w_desc, y_desc, cos, sin, m, n, k, s, 2 * num_heads * d, programs, precision, d)
    return out
