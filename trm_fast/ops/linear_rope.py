"""The attention's input projection with rotary embeddings: qkv = x W^T as (B, S, 3H, D), q and k heads rotated.

Shapes: x (B, S, K), weight (3 H D, K) (the qkv projection's: q heads, then k, then v), cos and sin (S, D)
fp32 -> (B, S, 3H, D). FLOPs per call: 2 M (3 H D) K for M = B S rows. The fused path
(trm_fast.kernels.linear_rope) rotates the tile in the GEMM's epilogue, so the projection is written once
and the separate RoPE pass over q and k (and, compiled, the layout copy around it) is gone.

On an H200 its previous version took 551 us at sudoku_attn's batch 768 where cuBLAS and inductor's RoPE pass
take 314 us, and the engine's 16-step evaluation 949 ms with it against 850 without
(bench/results/2026-11-29_h200_0ff1982_*). The current one (tables broadcast over a tile's heads, a TMA store)
takes 408 against 314 us, and the evaluation 866 against 855 ms (..._f3678c6_*): closer, still a loss. 'auto'
does not run it (trm_fast.backend.AUTO_OPS), 'fused' does.

On Hopper a second fused path (op ``linear_rope_sm90``, csrc/sm90/gemm_rope.h) is one CUTLASS warp-specialised
GEMM whose epilogue rotates each thread's accumulators in registers. It needs RoPE's pairs (a head's dims j and
j + D/2) in adjacent columns, so it runs on the weight's q and k rows reordered (`rope_pair_order`) and returns
q and k in that order: attention's q.k is the same sum in any order of a head's dims, and attention is the
output's only reader. Its rows are permuted in 64-row groups as well (`grouped_rows`), so that each thread
loads 8 table entries and stores 16 columns at a time, each row's entries once before the tile's first store.
On an H100 at sudoku_attn's batch 768 it takes 256.9 us, its mainloop alone 229.5, where cuBLAS's GEMM takes 191.3;
as the op 327.0 against 343.3 us for cuBLAS and inductor's RoPE (pytest-benchmark medians); the engine's 16-step
evaluation 856.0 against 875.1 ms without it (bench/results/2026-12-07_h100_fe9f4af_*). So 'auto' runs it
(AUTO_OPS). Loaded per group, behind the previous group's stores, the tables had cost 71 us over the mainloop. Its
other shapes (no groups: 867 us at best on an H100) were deleted after bench/NOTES.md recorded them.

The model reaches them through `trm_fast.ops.attention.self_attention`, which runs one where the backend and
the call allow (forward only: while autograd records, the official two steps run) and otherwise the
official steps themselves: F.linear, then RoPE inside the attention op.
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .. import _native
from .. import backend as _backend
from .rope import rope_reference

def linear_rope_reference(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                          num_heads: int) -> torch.Tensor:
    """F.linear, then RoPE in fp32 on the q and k views, as one (B, S, 3H, D) tensor."""
    b, s, _ = x.shape
    qkv = F.linear(x, weight).view(b, s, 3 * num_heads, weight.shape[0] // (3 * num_heads))
    q, k, v = qkv.split(num_heads, dim=2)
    return torch.cat((*rope_reference(q, k, cos, sin), v), dim=2)


@torch.library.custom_op("trm_fast::linear_rope", mutates_args=())
def linear_rope_fused(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                      num_heads: int) -> torch.Tensor:
    """The Triton kernel: (B, S, 3H, D) contiguous, q and k heads rotated; forward only. Where the tensors
    are not what the TMA kernel loads (a view whose base address is not 16-byte aligned: only a run-time
    check, so not in `unsupported`), the reference computes it, with one warning."""
    from ..kernels.linear_rope import linear_rope as kernel, loadable

    b, s, _ = x.shape
    out = x.new_empty((b, s, 3 * num_heads, weight.shape[0] // (3 * num_heads)))
    if loadable(x, weight, out):
        return kernel(x, weight, cos, sin, num_heads, out=out)
    _backend.warn_fallback("linear_rope", "x, weight or the output is not 16-byte aligned")
    return linear_rope_reference(x, weight, cos, sin, num_heads)


@linear_rope_fused.register_fake
def _(x, weight, cos, sin, num_heads):
    b, s, _ = x.shape
    return x.new_empty((b, s, 3 * num_heads, weight.shape[0] // (3 * num_heads)))


def projection_unsupported(x: torch.Tensor, weight: torch.Tensor, num_heads: int, backend: str) -> Optional[str]:
    """Why a Triton path cannot take this QKV projection at all, or None: what this op and
    trm_fast.ops.recomputed_attention both need (Triton on x's device, x (B, S, K), weight (3 H D, K) alike)."""
    return _backend.triton_unsupported(x, "x", backend) or _operands_unsupported(x, weight, num_heads)


def _operands_unsupported(x: torch.Tensor, weight: torch.Tensor, num_heads: int) -> Optional[str]:
    """Why no kernel (Triton's or CUTLASS's) can take this QKV projection, or None: x a non-empty (B, S, K),
    weight (3 H D, K) on x's device and in its dtype."""
    if x.ndim != 3 or x.numel() == 0:
        return f"x must be a non-empty (B, S, K) tensor, got shape {tuple(x.shape)}"
    why = _backend.unlike(x, weight=weight)
    if why is not None:
        return why
    if num_heads < 1 or weight.ndim != 2 or weight.shape[1] != x.shape[2] or weight.shape[0] % (3 * num_heads):
        return (f"weight must be (3 * num_heads * D, K) with K = x's last axis; got weight {tuple(weight.shape)}, "
                f"x {tuple(x.shape)}, num_heads {num_heads}")
    return None


def _tables_unsupported(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, d: int) -> Optional[str]:
    """Why RoPE's tables are not what the kernels read, or None: contiguous fp32 (S, D) on x's device."""
    for name, table in (("cos", cos), ("sin", sin)):
        if table.dtype != torch.float32 or tuple(table.shape) != (x.shape[1], d) or not table.is_contiguous():
            return (f"{name} must be a contiguous float32 (S, D) = {(x.shape[1], d)} table, got {table.dtype} "
                    f"{tuple(table.shape)}")
        if table.device != x.device:
            return f"{name} is on {table.device}, x on {x.device}"
    return None


def unsupported(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int,
                backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None. Strides and shapes only (torch.compile traces
    this): the base addresses' alignment is checked at run time (`linear_rope_fused`)."""
    from ..kernels.tma_gemm import row_major

    why = projection_unsupported(x, weight, num_heads, backend)
    if why is not None:
        return why
    d = weight.shape[0] // (3 * num_heads)
    if d < 4 or d > 128 or d & (d - 1):
        # the kernel's column blocks hold whole half-heads (rotate-half pairs each head's two halves)
        return f"the head dim D must be a power of two from 4 to 128, got {d}"
    why = _tables_unsupported(x, cos, sin, d)
    if why is not None:
        return why
    size = x.element_size()
    if not row_major(x) or weight.stride(1) != 1 or (x.shape[2] * size) % 16 or (weight.shape[0] * size) % 16:
        return ("the TMA kernel needs row-major x and weight with 16-byte rows on a Hopper or newer GPU; got x "
                f"{tuple(x.shape)} strides {x.stride()}, weight strides {weight.stride()}")
    return None


def rope_pair_order(t: torch.Tensor, num_heads: int, dim: int) -> torch.Tensor:
    """t with its q and k heads' entries along `dim` (3 H D long: q heads, k heads, v heads) reordered so that
    each head's j and j + D/2 sit at 2j and 2j + 1, RoPE's pairs side by side; v's entries as they are. On the
    qkv weight (dim 0) it is what linear_rope_sm90 runs on, on the projection (B, S, 3 H D) what it returns."""
    dim %= t.ndim
    n = t.shape[dim]
    d = n // (3 * num_heads)
    qk, v = t.split((2 * num_heads * d, num_heads * d), dim=dim)
    qk = qk.unflatten(dim, (2 * num_heads, 2, d // 2)).transpose(dim + 1, dim + 2).flatten(dim, dim + 2)
    return torch.cat((qk, v), dim=dim)


def linear_rope_pairs_reference(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                                num_heads: int) -> torch.Tensor:
    """What linear_rope_sm90 computes, from the official steps: linear_rope_reference with q and k in
    rope_pair_order."""
    qkv = linear_rope_reference(x, weight, cos, sin, num_heads)
    return rope_pair_order(qkv.flatten(2), num_heads, dim=2).view(qkv.shape)


@torch.library.custom_op("trm_fast::linear_rope_sm90", mutates_args=())
def linear_rope_sm90(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int,
                     x_partials: Optional[torch.Tensor] = None, eps: float = 0.0) -> torch.Tensor:
    """CUTLASS's GEMM with RoPE in its epilogue (csrc/sm90/gemm_rope.h): (B, S, 3H, D) contiguous, q and k
    rotated and in rope_pair_order, for attention alone to read; forward only. unsupported_sm90 checks the
    inputs. The reordered weight is a (3 H D, K) gather made here, each call (1.5 MB at sudoku_attn's:
    `sm90_weight`). With `x_partials` ((B S, K / 64)), x is the carried RMSNorm's un-normalised y
    (trm_fast.ops.carried_norm, which checks them) and the projection is rms_norm(x)'s."""
    b, s, k = x.shape
    out = x.new_empty((b, s, 3 * num_heads, weight.shape[0] // (3 * num_heads)))
    # the rows as a view: unsupported_sm90 checks that they flatten to one stride
    _launch(x.reshape(b * s, k), sm90_weight(weight, num_heads), out.view(b * s, -1), cos, sin, s, num_heads,
            x_partials, eps)
    return out


def sm90_weight(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The (3 H D, K) qkv weight as the kernel reads it: q and k rows in rope_pair_order, then all rows permuted in
    groups (`grouped_rows`), in one gather of whole rows (_native.gather_rows) where the two permuted copies took
    ~10 us or more each."""
    def order(r: torch.Tensor) -> torch.Tensor:
        return grouped_rows(rope_pair_order(r.unsqueeze(1), num_heads, dim=0)).squeeze(1)
    return _native.gather_rows(weight, ("rope", num_heads), order)


def launch_sm90(rows: torch.Tensor, pairs: torch.Tensor, out: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                seq: int, num_heads: int, x_partials: Optional[torch.Tensor] = None, eps: float = 0.0):
    """out (M, 3 H D) = rows (M, K) @ pairs^T, each q and k pair of columns turned by RoPE at position
    m % seq for row m: the CUTLASS kernel on the weight already in rope_pair_order (pairs, row-major), permuted
    here in groups (`grouped_rows`). Inputs as unsupported_sm90 takes them. With `x_partials`, rows are the carried
    RMSNorm's un-normalised y and their scale is applied first (trm_fast.ops.carried_norm, which checks them)."""
    _launch(rows, grouped_rows(pairs), out, cos, sin, seq, num_heads, x_partials, eps)


def _launch(rows: torch.Tensor, w: torch.Tensor, out: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, seq: int,
            num_heads: int, x_partials: Optional[torch.Tensor] = None, eps: float = 0.0):
    """The kernel on w as it reads it (sm90_weight)."""
    (m, k), n = rows.shape, w.shape[0]
    d = n // (3 * num_heads)
    ext = _native.extension()
    workspace = rows.new_empty(ext.gemm_rope_sm90_workspace(m, n, k), dtype=torch.uint8)
    ext.gemm_rope_sm90(rows.data_ptr(), rows.stride(0), w.data_ptr(), w.stride(0), out.data_ptr(), out.stride(0),
                       cos.data_ptr(), sin.data_ptr(), seq, d, 2 * num_heads * d,
                       0 if x_partials is None else x_partials.data_ptr(), float(eps), m, n, k, workspace.data_ptr(),
                       rows.device.index, _native.stream(rows))


def grouped_rows(pairs: torch.Tensor) -> torch.Tensor:
    """An (n, K) weight in rotation-pair order as the grouped shape reads it: its row 64 g + 8 i + 2 q + e is
    pairs' row 64 g + 16 q + 2 i + e, so that the accumulator column lane q of each quad holds for pair i is the
    output's column 64 g + 16 q + 2 i + e: 16 adjacent output columns, 8 pairs of one head with 8 consecutive
    table entries (csrc/sm90/gemm_rope_kernel.cuh's RopeGroup). n a multiple of 64; one copy."""
    n, k = pairs.shape
    group = _native.SM90_GROUP_ROWS
    return pairs.view(n // group, 4, 8, 2, k).permute(0, 2, 1, 3, 4).reshape(n, k)


@linear_rope_sm90.register_fake
def _(x, weight, cos, sin, num_heads, x_partials=None, eps=0.0):
    b, s, _ = x.shape
    return x.new_empty((b, s, 3 * num_heads, weight.shape[0] // (3 * num_heads)))


def unsupported_sm90(x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     num_heads: int) -> Optional[str]:
    """Why the CUTLASS kernel cannot take this call, or None: a Hopper GPU (compute capability 9.0), the
    extension built with it, bf16, the operands and tables every kernel takes, the 16-byte alignment TMA needs
    (K a multiple of 8, x's rows flattened to one 16-byte aligned stride), and its groups: 3 H D in whole
    64-column groups and a head dim that is a multiple of 16. Strides and offsets only: torch.compile traces
    it."""
    why = _native.sm90_unsupported(x) or _operands_unsupported(x, weight, num_heads)
    if why is not None:
        return why
    n, k = weight.shape
    d = n // (3 * num_heads)
    if d % 2:
        return f"the head dim D must be even (RoPE's pairs), got {d}"
    why = _tables_unsupported(x, cos, sin, d)
    if why is not None:
        return why
    if k % 8:
        return f"K ({k}) must be a multiple of 8"
    if n % _native.SM90_GROUP_ROWS or d % 16:
        return f"the kernel's groups need 3 H D ({n}) a multiple of 64 and D ({d}) one of 16"
    if x.stride(2) != 1 or (x.shape[0] > 1 and x.stride(0) != x.shape[1] * x.stride(1)):
        return f"x's rows must flatten to one stride with unit stride along K (strides {x.stride()})"
    # the weight is copied (rope_pair_order): only x's offsets matter; offsets, not addresses (traced tensors
    # have no storage, and PyTorch's allocations start 16-byte aligned)
    row_stride = x.stride(1) if x.shape[1] > 1 else (x.stride(0) if x.shape[0] > 1 else k)
    if row_stride % 8 or x.storage_offset() % 8:
        return f"x's rows must be 16-byte aligned (strides {x.stride()}, offset {x.storage_offset()})"
    return None
