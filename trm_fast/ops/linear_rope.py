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

The model reaches it through `trm_fast.ops.attention.self_attention`, which runs it where the backend and
the call allow (forward only: while autograd records, the official two steps run) and otherwise the
official steps themselves: F.linear, then RoPE inside the attention op.
"""

from typing import Optional

import torch
import torch.nn.functional as F

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
    why = _backend.triton_unsupported(x, "x", backend)
    if why is not None:
        return why
    if x.ndim != 3 or x.numel() == 0:
        return f"x must be a non-empty (B, S, K) tensor, got shape {tuple(x.shape)}"
    why = _backend.unlike(x, weight=weight)
    if why is not None:
        return why
    if num_heads < 1 or weight.ndim != 2 or weight.shape[1] != x.shape[2] or weight.shape[0] % (3 * num_heads):
        return (f"weight must be (3 * num_heads * D, K) with K = x's last axis; got weight {tuple(weight.shape)}, "
                f"x {tuple(x.shape)}, num_heads {num_heads}")
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
    for name, table in (("cos", cos), ("sin", sin)):
        if table.dtype != torch.float32 or tuple(table.shape) != (x.shape[1], d) or not table.is_contiguous():
            return (f"{name} must be a contiguous float32 (S, D) = {(x.shape[1], d)} table, got {table.dtype} "
                    f"{tuple(table.shape)}")
        if table.device != x.device:
            return f"{name} is on {table.device}, x on {x.device}"
    size = x.element_size()
    if not row_major(x) or weight.stride(1) != 1 or (x.shape[2] * size) % 16 or (weight.shape[0] * size) % 16:
        return ("the TMA kernel needs row-major x and weight with 16-byte rows on a Hopper or newer GPU; got x "
                f"{tuple(x.shape)} strides {x.stride()}, weight strides {weight.stride()}")
    return None
