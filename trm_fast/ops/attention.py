"""Bidirectional multi-head attention with rotary embeddings, from the fused QKV projection's output.

    q, k, v = split(qkv);  q, k = rope(q, k, cos, sin)  (when tables are given)
    out = softmax(q k^T / sqrt(D)) v   per head, non-causal

Shapes: qkv (B, S, 3H, D) -> out (B, S, H * D); cos, sin (S, D) fp32 or None.
FLOPs per call: 4 * B * H * S^2 * D (two matmuls); bytes: qkv in and the output out (plus the tables)
when the score matrix stays on chip, as in the fused kernel (trm_fast.kernels.attention), which also
rotates q and k as it loads them. The reference rotates in its own pass and transposes q, k, v for SDPA.

The fused path is forward only: while autograd records (grad mode on and qkv requiring grad) the
reference runs, whatever the backend; the fused backward is the training issue's.
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .linear_rope import linear_rope_fused, linear_rope_sm90
from .linear_rope import unsupported as linear_rope_unsupported
from .linear_rope import unsupported_sm90 as linear_rope_sm90_unsupported
from .recomputed_attention import fused_backward_unsupported, kept_attention_fused, recomputed_attention_fused
from .recomputed_attention import unsupported as recomputed_attention_unsupported
from .rope import rope_reference


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PyTorch's scaled_dot_product_attention on the head-major views, as the official model calls it."""
    b, s, h, d = q.shape
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).reshape(b, s, h * d)


def rope_attention_reference(qkv: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
                             num_heads: int) -> torch.Tensor:
    """What the official model computes: split, RoPE in fp32 rounded back to the input dtype, SDPA."""
    q, k, v = qkv.split(num_heads, dim=2)  # each (B, S, H, D)
    if cos is not None:
        q, k = rope_reference(q, k, cos, sin)
    return attention_reference(q, k, v)


@torch.library.custom_op("trm_fast::rope_attention", mutates_args=())
def rope_attention_fused(qkv: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
                         num_heads: int) -> torch.Tensor:
    """The Triton kernel: (B, S, H * D) contiguous from qkv (B, S, 3H, D); forward only."""
    from ..kernels.attention import rope_attention_fwd

    return rope_attention_fwd(qkv, cos, sin, num_heads)


@rope_attention_fused.register_fake
def _(qkv, cos, sin, num_heads):
    b, s, _, d = qkv.shape
    return qkv.new_empty((b, s, num_heads * d))


def unsupported(qkv: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], num_heads: int,
                backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None."""
    why = _backend.triton_unsupported(qkv, "qkv", backend)
    if why is not None:
        return why
    if num_heads < 1:
        return f"num_heads must be positive, got {num_heads}"
    if qkv.ndim != 4 or qkv.shape[2] != 3 * num_heads:
        return f"qkv must have shape (B, S, 3 * num_heads = {3 * num_heads}, D), got {tuple(qkv.shape)}"
    d = qkv.shape[3]
    if d < 32 or d > 128 or d & (d - 1):
        # the kernel rotates and multiplies each half of a head on its own: a dot over K = D / 2 >= 16
        return f"qkv's head dim D must be a power of two from 32 to 128 (a half is a dot's K, 16 at least), got {d}"
    if qkv.numel() == 0:
        return f"qkv is empty (shape {tuple(qkv.shape)})"
    if qkv.stride(-1) != 1:
        return f"qkv's last axis must have unit stride, got strides {qkv.stride()}"
    if (cos is None) != (sin is None):
        return "cos and sin must be given both or neither"
    for name, table in (("cos", cos), ("sin", sin)):
        if table is None:
            continue
        if table.dtype != torch.float32:
            return f"{name} must be float32, got {table.dtype}"
        if tuple(table.shape) != (qkv.shape[1], d):
            return f"{name} must have shape (S, D) = {(qkv.shape[1], d)}, got {tuple(table.shape)}"
        if table.device != qkv.device:
            return f"{name} is on {table.device}, qkv on {qkv.device}"
    return None


# 'auto' runs the kernel for a few short puzzles (AUTO_OPS names `attention_few_puzzles`), where cuDNN's SDPA
# takes three kernels a call and inductor's RoPE pass a fourth: sudoku_attn's 16-step evaluation in the engine
# (H100) took 19.69 against 22.60 ms at batch 1 and 26.13 against 28.42 ms at batch 8
# (bench/results/2026-12-06_h100_78bf757_b1_engine_ops.jsonl). Batches between 8 and 768 are not measured.
FEW_PUZZLES, SHORT_PUZZLE = 8, 128


def auto_op(qkv: torch.Tensor, backend: str = "auto") -> str:
    """The name under which AUTO_OPS lets 'auto' run the kernel on this call: `attention_few_puzzles` for at most
    FEW_PUZZLES puzzles of at most SHORT_PUZZLE positions, `attention` otherwise (and on any other backend, whose
    errors and warnings then name the op plainly)."""
    few = backend == "auto" and qkv.ndim == 4 and qkv.shape[0] <= FEW_PUZZLES and qkv.shape[1] <= SHORT_PUZZLE
    return "attention_few_puzzles" if few else "attention"


def rope_attention(qkv: torch.Tensor, cos_sin, num_heads: int, backend: str = "reference") -> torch.Tensor:
    """Non-causal attention of RoPE(q), RoPE(k), v split from ``qkv`` (B, S, 3H, D); ``cos_sin`` is None or
    the model's (cos, sin) tables (S, D). Returns (B, S, H * D). The kernel is forward only: where autograd
    records, the reference runs on every backend (the fused backward is the training issue's). At the paper
    batches it runs on the 'fused' backend alone: on an H200 it takes 306 us at sudoku_attn's batch 768 where
    the reference under torch.compile (inductor's RoPE kernel, then cuDNN's SDPA) takes 227 us, so 'auto'
    keeps the reference there (bench/results/2026-11-29_h200_7ef693d_microbench.json); 'auto' runs it for a
    few short puzzles (`auto_op`)."""
    cos, sin = cos_sin if cos_sin is not None else (None, None)
    recording = _backend.records(qkv)  # no fused backward yet: the reference's autograd
    why_not = lambda: unsupported(qkv, cos, sin, num_heads, backend)  # noqa: E731
    if not recording and _backend.use_fused(backend, auto_op(qkv, backend), why_not):
        return rope_attention_fused(qkv, cos, sin, num_heads)
    return rope_attention_reference(qkv, cos, sin, num_heads)


def self_attention(x: torch.Tensor, qkv_weight: torch.Tensor, cos_sin, num_heads: int,
                   backend: str = "reference", recompute: bool = False) -> torch.Tensor:
    """The attention sublayer up to its output projection: x (B, S, K) through the qkv projection (weight
    (3 H D, K), in x's dtype), RoPE when ``cos_sin`` is given, then `rope_attention`; (B, S, H * D).

    While autograd records, a model built with `recompute` asks for trm_fast.ops.recomputed_attention, which
    keeps x and the output alone (on a GPU: trm_fast.backend.recomputes_in_ops); one built without it asks, on a
    GPU, for `kept_attention` from the same module, which keeps the rotated projection and packs the gradients
    in one pass (2 GiB less held by the compiled sudoku_attn step at batch 768 on an H200, no slower). Where a
    fused QKV + RoPE kernel runs (trm_fast.ops.linear_rope: forward only, a Hopper GPU; CUTLASS's where AUTO_OPS
    names linear_rope_sm90, Triton's otherwise), the projection arrives rotated and the attention op gets no
    tables; otherwise the official steps run, F.linear and then RoPE inside the attention op, which the
    reference backend keeps bit-identical."""
    b, s, _ = x.shape
    if _backend.records(x, qkv_weight):
        cos, sin = cos_sin if cos_sin is not None else (None, None)
        why_not = lambda: recomputed_attention_unsupported(x, qkv_weight, cos, sin, num_heads, backend)  # noqa: E731
        # the training op that recomputes the projection, or the one that keeps it, where the one rule lets it run
        op = recomputed_attention_fused if recompute else kept_attention_fused
        name = "recomputed_attention" if recompute else "kept_attention"
        if _backend.recomputes_in_ops(backend, x.device) and _backend.use_fused(backend, name, why_not):
            fused_backward = _backend.offers(backend, "attention_backward",
                                             lambda: fused_backward_unsupported(x, qkv_weight, num_heads))
            return op(x, qkv_weight, cos, sin, num_heads, fused_backward)[0]
    elif cos_sin is not None:
        cos, sin = cos_sin
        if _backend.offers(backend, "linear_rope_sm90",
                           lambda: linear_rope_sm90_unsupported(x, qkv_weight, cos, sin, num_heads)):
            # q and k rotated, their dims in RoPE's pair order: attention's q.k does not see the order
            return rope_attention(linear_rope_sm90(x, qkv_weight, cos, sin, num_heads), None, num_heads, backend)
        why_not = lambda: linear_rope_unsupported(x, qkv_weight, cos, sin, num_heads, backend)  # noqa: E731
        if _backend.use_fused(backend, "linear_rope", why_not):
            return rope_attention(linear_rope_fused(x, qkv_weight, cos, sin, num_heads), None, num_heads, backend)
    qkv = F.linear(x, qkv_weight).view(b, s, 3 * num_heads, qkv_weight.shape[0] // (3 * num_heads))
    return rope_attention(qkv, cos_sin, num_heads, backend)
