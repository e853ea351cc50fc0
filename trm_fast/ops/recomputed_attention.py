"""The attention sublayer for training up to its output projection, out = attention(RoPE(x W_qkv^T)), as one op
with its own backward, in two forms:
- `recomputed_attention` keeps its input and its output alone, and runs the QKV projection and RoPE again in
  the backward;
- `kept_attention` keeps the rotated projection too, as autograd through the official ops keeps q, k and v,
  and its backward packs the attention's gradients into the projection's layout in one pass
  (kernels/rope.rope_pack_backward) where the compiled official backward concatenates and rotates them back
  in a pass of its own (214 us a layer at sudoku_attn's batch 768 on an H200, twice the pass's byte floor:
  bench/results/2026-11-29_h200_c04fb92_trainer_profile.txt). It also keeps less: autograd through the official
  ops kept the whole unrotated projection alive (v is a view of it) beside the rotated copies of q and k, about
  6 units a layer with the output, where this op keeps the rotated projection and the output, 4. The compiled
  sudoku_attn step at batch 768 held 12.35 against 14.34 GiB after its forward, in 91.49 against 91.92 ms (H200,
  bench/results/2026-12-07_h200_d042a21_memory_kept_attention.jsonl), so 'auto' runs it on a GPU.

Shapes: x (B, S, K), qkv_weight (3 H D, K) (q heads, then k, then v), cos, sin (S, D) fp32 or None
-> out (B, S, H D).
Autograd through the ops keeps q, k and v after RoPE and the attention's output in its own layout: 4 of the 17
(B, S, D) tensors a sudoku_attn layer kept (bench/NOTES.md, "What the backward stores"). `recomputed_attention`
keeps x (the block's input, kept anyway), out (which the output projection keeps anyway) and the attention's
logsumexp (fp32, one per row and head): per sudoku_attn layer at batch 768, 0.36 GiB less held, for one more QKV
GEMM (117 GFLOP) and RoPE pass in the backward (compiled step on an H200: 14.3 against 9.4 GiB held, 92.4 against
96.7 ms, bench/results/2026-11-29_h200_9c828fc_memory.jsonl). The attention's forward does not run again: its
backward takes the kept output and logsumexp, as autograd's would.

The attention is PyTorch's own kernel, the one F.scaled_dot_product_attention picks for these tensors
(cuDNN's on an H200), called through its forward and backward ops so that the backward can run inside this
op (a custom op's body runs below autograd). Where PyTorch would take its math path (a CPU, say), the
same math in fp32 runs here. RoPE is trm_fast.kernels.rope's in-place pass. Each backward is one opaque op,
so that a compiled graph cannot move the recompute to the start of the backward.

Backward, with dout (B, S, H D):
    qkv = RoPE(x W_qkv^T)                         the forward's again, in place (recomputed_attention only)
    dq, dk, dv = attention_backward(dout, q, k, v, out, logsumexp)
    dqkv = [RoPE^T(dq) | RoPE^T(dk) | dv]         one pass (kernels/rope.rope_pack_backward)
    dx = dqkv W_qkv,   dW_qkv = dqkv^T x
With `fused_backward` (where AUTO_OPS names `attention_backward` and `fused_backward_unsupported` allows: up to
128 positions, 16-bit), the second and third lines are one Triton kernel instead, kernels/attention_backward.py:
the whole sequence of a head in one tile, dqkv written packed and rotated back (468 against 694 us at
sudoku_attn's batch 768 on an H200).
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..backend import triton_status
from .linear_rope import projection_unsupported

# torch.nn.attention.SDPBackend's values, as torch._fused_sdp_choice returns them
_FLASH, _EFFICIENT, _CUDNN = 1, 2, 3
# trm_fast's attention backward holds the whole sequence in one tile (kernels/attention_backward.py)
FUSED_BACKWARD_MAX_S = 128


def _rotated_qkv(x: torch.Tensor, weight: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
                 num_heads: int) -> torch.Tensor:
    """RoPE(x W^T) as (B, S, 3H, D), rotated in place."""
    from ..kernels.rope import rope_qk_

    b, s, _ = x.shape
    qkv = F.linear(x, weight).view(b, s, 3 * num_heads, weight.shape[0] // (3 * num_heads))
    return qkv if cos is None else rope_qk_(qkv, cos, sin, num_heads)


def _heads(t: torch.Tensor, num_heads: int):
    """(B, S, n H, D), or (B, S, H D) for n = 1, -> n (B, H, S, D) views, the layout the attention ops take."""
    if t.ndim == 3:
        t = t.view(*t.shape[:2], num_heads, -1)
    return [part.transpose(1, 2) for part in t.split(num_heads, dim=2)]


def _kind(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    """Which attention kernel F.scaled_dot_product_attention would run; 0 (math) off a GPU."""
    return torch._fused_sdp_choice(q, k, v) if q.is_cuda else 0


def _attention_forward(q, k, v) -> Tuple[torch.Tensor, torch.Tensor]:
    """(out (B, H, S, D), logsumexp (B, H, S) fp32, contiguous) of softmax(q k^T / sqrt(D)) v."""
    kind, (b, h, s, _) = _kind(q, k, v), q.shape
    if kind == _CUDNN:  # its logsumexp is (B, H, S, 1)
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)[:2]
        return out, lse.reshape(b, h, s).contiguous()
    if kind == _FLASH:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[:2]
        return out, lse.contiguous()
    if kind == _EFFICIENT:  # its logsumexp has S rounded up to a multiple of 32
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
        return out, lse[..., :s].contiguous()
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    lse = scores.logsumexp(-1)
    return ((scores - lse[..., None]).exp() @ v.float()).to(q.dtype), lse


def _attention_backward(dout, q, k, v, out, lse) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) as autograd computes them through `_attention_forward`'s kernel (no dropout, no mask), with
    the logsumexp given back in the shape that kernel made it."""
    kind, s = _kind(q, k, v), q.shape[2]
    none = q.new_empty((0,), dtype=torch.int64)  # the dropout's random state: unused without dropout
    if kind == _CUDNN:
        return torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            dout, q, k, v, out, lse.unsqueeze(-1), none, none, None, None, None, s, s, 0.0, False)
    if kind == _FLASH:
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(dout, q, k, v, out, lse, None, None, s, s,
                                                                           0.0, False, none, none)
    if kind == _EFFICIENT:  # rows past S: an infinite logsumexp gives them no probability, were they read
        lse = F.pad(lse, (0, -s % 32), value=math.inf)
        return torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            dout, q, k, v, None, out, lse, none, none, 0.0, [True, True, True, False])[:3]
    scale = 1 / math.sqrt(q.shape[-1])
    q32, k32, v32, dout32 = q.float(), k.float(), v.float(), dout.float()
    p = ((q32 @ k32.transpose(-1, -2)) * scale - lse[..., None]).exp()
    dp = dout32 @ v32.transpose(-1, -2)
    ds = p * (dp - (dout32 * out.float()).sum(-1, keepdim=True))
    return ((ds @ k32) * scale).to(q.dtype), ((ds.transpose(-1, -2) @ q32) * scale).to(q.dtype), \
        (p.transpose(-1, -2) @ dout32).to(q.dtype)


@torch.library.custom_op("trm_fast::recomputed_attention", mutates_args=())
def recomputed_attention_fused(x: torch.Tensor, qkv_weight: torch.Tensor, cos: Optional[torch.Tensor],
                               sin: Optional[torch.Tensor], num_heads: int, fused_backward: bool = False
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(out (B, S, H D), logsumexp (B, H, S) fp32). `fused_backward`: the backward runs trm_fast's attention
    backward kernel (`_packed_grads`)."""
    b, s, _ = x.shape
    out, lse = _attention_forward(*_heads(_rotated_qkv(x, qkv_weight, cos, sin, num_heads), num_heads))
    return out.transpose(1, 2).reshape(b, s, -1), lse


@recomputed_attention_fused.register_fake
def _(x, qkv_weight, cos, sin, num_heads, fused_backward=False):
    b, s, _ = x.shape
    return x.new_empty((b, s, qkv_weight.shape[0] // 3)), x.new_empty((b, num_heads, s), dtype=torch.float32)


def _packed_grads(dout: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                  cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], num_heads: int,
                  fused_backward: bool) -> torch.Tensor:
    """The gradient of the projection's output, dqkv (B, S, 3H, D) contiguous, from dout (B, S, H D), the rotated
    projection qkv (B, S, 3H, D), the output and its logsumexp: with `fused_backward`, trm_fast's one-tile kernel
    (kernels/attention_backward.py), otherwise PyTorch's attention backward and then the packing pass. A function
    of its own so that a recomputed qkv is freed when it returns."""
    if fused_backward:
        from ..kernels.attention_backward import attention_backward_packed

        return attention_backward_packed(dout, qkv, out, lse, cos, sin, num_heads)
    from ..kernels.rope import rope_pack_backward

    (o,) = _heads(out, num_heads)
    grads = _attention_backward(*_heads(dout.contiguous(), num_heads), *_heads(qkv, num_heads), o, lse)
    return rope_pack_backward(*grads, cos, sin)


def _projection_grads(dqkv: torch.Tensor, x: torch.Tensor, qkv_weight: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dqkv_weight) from the gradient of the projection's output (B, S, 3H, D), contiguous."""
    b, s, _ = x.shape
    rows = dqkv.view(b * s, -1)
    return (rows @ qkv_weight).view(x.shape), rows.t() @ x.reshape(b * s, -1)


@torch.library.custom_op("trm_fast::recomputed_attention_backward", mutates_args=())
def recomputed_attention_backward(dout: torch.Tensor, x: torch.Tensor, qkv_weight: torch.Tensor,
                                  cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], out: torch.Tensor,
                                  lse: torch.Tensor, num_heads: int, fused_backward: bool = False
                                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dqkv_weight) from dout (B, S, H D) and what the forward kept."""
    qkv = _rotated_qkv(x, qkv_weight, cos, sin, num_heads)
    return _projection_grads(_packed_grads(dout, qkv, out, lse, cos, sin, num_heads, fused_backward), x, qkv_weight)


@recomputed_attention_backward.register_fake
def _(dout, x, qkv_weight, cos, sin, out, lse, num_heads, fused_backward=False):
    return torch.empty_like(x), torch.empty_like(qkv_weight)


def _setup_context(ctx, inputs, output):
    x, qkv_weight, cos, sin, num_heads, fused_backward = inputs  # defaults filled in by the op's schema
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.num_heads, ctx.fused_backward = num_heads, fused_backward
    ctx.save_for_backward(x, qkv_weight, cos, sin, out, lse)


def _backward(ctx, dout, _):
    x, qkv_weight, cos, sin, out, lse = ctx.saved_tensors
    dx, dweight = recomputed_attention_backward(dout, x, qkv_weight, cos, sin, out, lse, ctx.num_heads,
                                                ctx.fused_backward)
    return dx, dweight, None, None, None, None


recomputed_attention_fused.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("trm_fast::kept_attention", mutates_args=())
def kept_attention_fused(x: torch.Tensor, qkv_weight: torch.Tensor, cos: Optional[torch.Tensor],
                         sin: Optional[torch.Tensor], num_heads: int, fused_backward: bool = False
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out (B, S, H D), logsumexp (B, H, S) fp32, the rotated projection (B, S, 3H, D)): the last two kept for
    the backward. `fused_backward` as for `recomputed_attention`."""
    b, s, _ = x.shape
    qkv = _rotated_qkv(x, qkv_weight, cos, sin, num_heads)
    out, lse = _attention_forward(*_heads(qkv, num_heads))
    return out.transpose(1, 2).reshape(b, s, -1), lse, qkv


@kept_attention_fused.register_fake
def _(x, qkv_weight, cos, sin, num_heads, fused_backward=False):
    b, s, _ = x.shape
    return (x.new_empty((b, s, qkv_weight.shape[0] // 3)), x.new_empty((b, num_heads, s), dtype=torch.float32),
            x.new_empty((b, s, 3 * num_heads, qkv_weight.shape[0] // (3 * num_heads))))


@torch.library.custom_op("trm_fast::kept_attention_backward", mutates_args=())
def kept_attention_backward(dout: torch.Tensor, x: torch.Tensor, qkv_weight: torch.Tensor, qkv: torch.Tensor,
                            cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], out: torch.Tensor,
                            lse: torch.Tensor, num_heads: int, fused_backward: bool = False
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, dqkv_weight) from dout (B, S, H D) and what the forward kept."""
    return _projection_grads(_packed_grads(dout, qkv, out, lse, cos, sin, num_heads, fused_backward), x, qkv_weight)


@kept_attention_backward.register_fake
def _(dout, x, qkv_weight, qkv, cos, sin, out, lse, num_heads, fused_backward=False):
    return torch.empty_like(x), torch.empty_like(qkv_weight)


def _setup_kept(ctx, inputs, output):
    x, qkv_weight, cos, sin, num_heads, fused_backward = inputs  # defaults filled in by the op's schema
    out, lse, qkv = output
    ctx.mark_non_differentiable(lse, qkv)
    ctx.num_heads, ctx.fused_backward = num_heads, fused_backward
    ctx.save_for_backward(x, qkv_weight, qkv, cos, sin, out, lse)


def _backward_kept(ctx, dout, _lse, _qkv):
    x, qkv_weight, qkv, cos, sin, out, lse = ctx.saved_tensors
    dx, dweight = kept_attention_backward(dout, x, qkv_weight, qkv, cos, sin, out, lse, ctx.num_heads,
                                          ctx.fused_backward)
    return dx, dweight, None, None, None, None


kept_attention_fused.register_autograd(_backward_kept, setup_context=_setup_kept)


def unsupported(x: torch.Tensor, qkv_weight: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
                num_heads: int, backend: str) -> Optional[str]:
    """Why the op cannot take this call, or None."""
    why = projection_unsupported(x, qkv_weight, num_heads, backend)
    if why is not None:
        return why
    d = qkv_weight.shape[0] // (3 * num_heads)
    if d < 2 or d & (d - 1):
        return f"the head dim D must be a power of two (RoPE's pass holds half a head), got {d}"
    if (cos is None) != (sin is None):
        return "cos and sin must be given both or neither"
    for name, table in (("cos", cos), ("sin", sin)):
        if table is not None and (table.dtype != torch.float32 or tuple(table.shape) != (x.shape[1], d)
                                  or table.device != x.device):
            return (f"{name} must be a float32 (S, D) = {(x.shape[1], d)} table on {x.device}, got {table.dtype} "
                    f"{tuple(table.shape)} on {table.device}")
    return None


def fused_backward_unsupported(x: torch.Tensor, qkv_weight: torch.Tensor, num_heads: int) -> Optional[str]:
    """Why trm_fast's attention backward kernel (`fused_backward`) cannot take this call, or None; the op itself
    must take it (`unsupported`). Shapes only: torch.compile traces it."""
    s, d = x.shape[1], qkv_weight.shape[0] // (3 * num_heads)
    if x.dtype not in (torch.bfloat16, torch.float16):
        # measured in bf16 alone; in fp32 its products would run as IEEE FMAs, unmeasured against PyTorch's
        return f"the kernel runs 16-bit inputs (bfloat16, float16), got {x.dtype}"
    if s > FUSED_BACKWARD_MAX_S:
        return f"the sequence must fit one tile, S <= {FUSED_BACKWARD_MAX_S}, got {s}"
    if d < 32 or d > 128 or d & (d - 1):
        return f"the head dim D must be a power of two from 32 to 128 (a half is a dot's K), got {d}"
    return triton_status()
