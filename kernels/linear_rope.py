"""The attention's QKV projection with the rotary position embedding in its epilogue, in Triton.

Math, per row m (position s = m mod S) and output column c (head c // D, place d = c mod D in the head):
    y[m, c] = round(sum_k x[m, k] w[c, k])                               (fp32 accumulation; round: to x's dtype)
    for the q and k heads (c < 2 H D), in fp32, rounded once:
    y[m, c] = y[m, c] cos[s, d] + rotate_half(y[m, :])[c] sin[s, d],     rotate_half([a | b]) = [-b | a] per head
The v heads keep the projection. This is what the model computes in two passes, F.linear and then RoPE on the
q and k views (trm_fast.ops.rope); fused, the projection's output is written once, rotated, and the RoPE
pass (read q and k, write them back, and in the compiled model a head-major layout copy) disappears.

Shapes: x (B, S, K) row-major with 16-byte aligned rows; w (3 H D, K) as nn.Linear stores it; cos, sin (S, D)
fp32; y (B, S, 3 H, D) contiguous, in x's dtype: the layout the attention takes (q, then k, then v heads).
One persistent TMA kernel (kernels/tma_gemm.py, Hopper and newer), built like the gate/up kernel: the weight's
rows are reordered once per call (`halves`) into every head's first half, then every head's second half, so
that a tile accumulates a block of first-half columns and the block of their partners side by side (two
dots on one x tile). A column block holds whole half-heads: the rotation is elementwise on the two
accumulators viewed as (rows, heads, place), with each table entry read once per (row, place) and broadcast
over the tile's heads, and the two halves are interleaved back per head and stored through a TMA descriptor.

The version before this one, which gathered a table entry per output element and stored through pointers,
lost on an H200 to cuBLAS plus inductor's RoPE pass (551 against 314 us at sudoku_attn's batch 768,
bench/NOTES.md). Compiled for sm_90a it used 255 registers and spilled about 2.2 KB a thread at every tile;
this one spills nothing at most tiles, and two programs fit an SM (bench/kernel_resources.py). On an H200
it took 408 us against 314 (287 TFLOP/s): still a loss, so only the 'fused' backend runs it. At that time
the two-per-SM tile that runs the gate/up kernel at 549 TFLOP/s spilled ~660 bytes here: the four fp32
table tiles (cos and sin of each half). RoPE's tables have equal halves, so the kernel now reads one half
where `equal_halves` says so (any other tables take the four-tile path): under the device's Triton no tile
spills, and the 128 x 128 tile drops from 255 registers to 212. Not yet timed on a GPU.

Floor per call: 2 M N K FLOPs (N = 3 H D); bytes: x read and y written once, 2 M (K + N) in bf16, the weight
(1.5 MB) and the tables (S D 8 B) from L2. sudoku_attn, batch 768 (M 74,496, K 512, N 1536): 117 GFLOP,
305 MB: 0.15 ms at 790 TFLOP/s, 73 us of traffic at 4.2 TB/s. The unfused RoPE pass moves 4 M H D elements
more (q and k read and written): 305 MB.
"""

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from . import tma_gemm
from .rope_tables import equal_halves


def halves(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The weight's rows reordered: each head's first D/2 rows (heads in order), then each head's second D/2
    rows, so that rows n and HALF + n (HALF = 3 H D / 2) make a column and its rotation partner."""
    n, k = weight.shape
    d = n // (3 * num_heads)
    return weight.reshape(3 * num_heads, 2, d // 2, k).transpose(0, 1).reshape(n, k)


def _set_block_shapes(nargs):
    """Pre-hook: x and w as tma_gemm sets them; y's block is a tile's columns and their rotation partners,
    BLOCK_M x 2 BLOCK_N, stored together (each head's first half, then its second half)."""
    tma_gemm.set_block_shapes(nargs)
    nargs["y_desc"].block_shape = [nargs["BLOCK_M"], 2 * nargs["BLOCK_N"]]


def _prune(configs, named_args, **kwargs):
    """tma_gemm's prune, with a BLOCK_M x 2 BLOCK_N output block and column blocks of whole half-heads (a tile's
    heads are reshaped apart)."""
    whole = [c for c in configs if c.kwargs["BLOCK_N"] % named_args["HALF_DIM"] == 0]
    return tma_gemm.prune_persistent(whole, named_args, out_blocks=2, **kwargs)


@triton.autotune(configs=tma_gemm.configs(tma_gemm.persistent_tiles(), _set_block_shapes),
                 key=["M", "HALF", "K", "S", "ROPE_HALF", "ELEMENT_SIZE", "HALF_DIM"],
                 prune_configs_by={"early_config_prune": _prune}, do_bench=tma_gemm.bench)
@triton.jit
def _linear_rope_kernel(x_desc, w_desc, y_desc, cos_ptr, sin_ptr, M, HALF, K, S, ROPE_HALF, ELEMENT_SIZE,
                        INPUT_PRECISION: tl.constexpr, HALF_DIM: tl.constexpr, EQUAL_HALVES: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                        CTAS: tl.constexpr):
    # Persistent (kernels/tma_gemm.py) over (row, half-column) tiles: half-column n (head n // HALF_DIM, place
    # i = n mod HALF_DIM) is output column n // HALF_DIM * D + i, its partner the one HALF_DIM further on. A
    # tile's BLOCK_N half-columns are HEADS whole half-heads, so its output is the 2 BLOCK_N contiguous columns
    # from 2 off_n, stored through y_desc; the tables are read once per (row, place) and broadcast over the
    # tile's heads. Heads below ROPE_HALF (H D half-columns: the q and k heads) rotate; the v heads do not.
    # EQUAL_HALVES: the tables' second halves equal their first (`equal_halves`), so they are not loaded: two
    # (BLOCK_M, HALF_DIM) fp32 tiles fewer, which takes every tile out of spilling on sm_90a.
    HEADS: tl.constexpr = BLOCK_N // HALF_DIM
    out_ty: tl.constexpr = y_desc.dtype
    places = tl.arange(0, HALF_DIM)
    for tile in tl.range(tl.program_id(0), tl.cdiv(M, BLOCK_M) * tl.cdiv(HALF, BLOCK_N), tl.num_programs(0)):
        pid_m, pid_n = tma_gemm.tile_coords(tile, M, HALF, BLOCK_M, BLOCK_N, GROUP_M)
        off_m, off_n = pid_m * BLOCK_M, pid_n * BLOCK_N
        acc_a, acc_b = tma_gemm.two_blocks(x_desc, w_desc, off_m, off_n, HALF, K, INPUT_PRECISION, BLOCK_M, BLOCK_N,
                                           BLOCK_K)
        # the projection rounded as F.linear rounds it, then RoPE in fp32 rounded once, as the reference does
        a = tl.reshape(acc_a.to(out_ty).to(tl.float32), (BLOCK_M, HEADS, HALF_DIM))
        b = tl.reshape(acc_b.to(out_ty).to(tl.float32), (BLOCK_M, HEADS, HALF_DIM))
        # the q and k heads rotate, the v heads pass through; a tile of v heads alone loads no table entries
        rotates = ((off_n + tl.arange(0, HEADS) * HALF_DIM) < ROPE_HALF)[None, :, None]
        table = ((off_m + tl.arange(0, BLOCK_M)) % S * (2 * HALF_DIM))[:, None] + places[None, :]
        load = table < S * (2 * HALF_DIM) * (off_n < ROPE_HALF).to(tl.int32)  # all or none
        cos_a = tl.load(cos_ptr + table, mask=load, other=1.0)[:, None, :]
        sin_a = tl.load(sin_ptr + table, mask=load, other=0.0)[:, None, :]
        if EQUAL_HALVES:
            cos_b, sin_b = cos_a, sin_a
        else:
            cos_b = tl.load(cos_ptr + table + HALF_DIM, mask=load, other=1.0)[:, None, :]
            sin_b = tl.load(sin_ptr + table + HALF_DIM, mask=load, other=0.0)[:, None, :]
        y_a = tl.where(rotates, a * cos_a - b * sin_a, a).to(out_ty)
        y_b = tl.where(rotates, b * cos_b + a * sin_b, b).to(out_ty)
        # (rows, heads, place, half) -> (rows, heads, half, place): each head's two halves side by side
        y = tl.reshape(tl.permute(tl.join(y_a, y_b), (0, 1, 3, 2)), (BLOCK_M, 2 * BLOCK_N))
        y_desc.store([off_m, 2 * off_n], y)


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
    w_desc = TensorDescriptor.from_tensor(halves(weight, num_heads), unset)
    y_desc = TensorDescriptor.from_tensor(out.view(m, n), unset)
    half = n // 2
    # fp32 operands: true fp32 products, as F.linear gives by default (tl.dot would take TF32 on a GPU)
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    launch = tma_gemm.grid(x.device, tma_gemm.tiles(m, half))
    _linear_rope_kernel[launch](x_desc, w_desc, y_desc, cos, sin, m, half, k, s, num_heads * d, x.element_size(),
                                precision, d // 2, equal_halves(cos, sin))
    return out
