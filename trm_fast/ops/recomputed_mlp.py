"""The SwiGLU MLP for training as one op each way: y = swiglu(x W_gu^T) W_down^T.

- `recomputed_mlp` keeps its input alone, and in the backward the gate/up projection runs again (below).
- `kept_mlp` keeps gate_up as autograd through the ops does, but writes it from the gate/up GEMM's epilogue beside
  h (Hopper's CUTLASS kernel, trm_fast.ops.linear_swiglu.swiglu_keep_sm90), where the ops write gate_up, read it
  back and write h: per sudoku_attn layer at batch 768, 458 MB less read and one kernel fewer. Same backward,
  on the kept gate_up.

Shapes: x (..., R, K) with any strides on its last two axes (MLP-t's transposed token mix too) and leading axes
that flatten to one stride, gate_up_weight (2I, K), down_weight (N, I) -> y (..., R, N) contiguous.
Autograd through the ops (or trm_fast.ops.swiglu_linear) keeps gate_up, (M, 2I): 6 of the 17 (B, S, D) tensors
a sudoku_attn layer kept (bench/NOTES.md, "What the backward stores"). This op keeps x, which the block keeps
anyway (the norm before it saves the same tensor), and the weights: per sudoku_attn layer at batch 768, 458 MB
less held, for one more gate/up GEMM in the backward (234 GFLOP, about 0.4 ms at cuBLAS's rate). Compiled step
on an H200: 14.3 against 8.4 GiB held, 92.4 against 97.3 ms (bench/results/2026-11-29_h200_9c828fc_memory.jsonl).
The backward is one opaque op too: a recompute that a compiled graph could see would be free to move it
to the start of the backward, and so to hold every layer's gate_up at once again.

Backward, rows of M, with dy (M, N):
    gate_up = x W_gu^T                                  (M, 2I), the forward's projection again
    dh = dy W_down                                      (M, I)
    dgate_up, h = swiglu_backward(dh, gate_up)          one Triton kernel, written over gate_up and dh
                                                        (with `fused_backward`, these two lines are one kernel:
                                                        trm_fast.ops.swiglu_linear.down_swiglu_grads)
    dW_down = dy^T h,   dW_gu = dgate_up^T x,   dx = dgate_up W_gu
At most one layer's gate_up and dh live at a time (9 I elements a row), and for MLP-t's transposed x a
row-major copy of it. dx comes back contiguous, whatever x's strides.

Where a row of K elements is not a multiple of 16 bytes (MLP-t's K = 97 positions), the copy of x and the
gate/up weight are padded with zeros to the next multiple, so that the three GEMMs on them (the recompute,
the weight's gradient, dx) get the 16-byte aligned leading dimensions cuBLAS's fast kernels need; the zeros
add nothing. Unpadded, sudoku_mlpt's training step took 180.7 ms with recompute against 122.9 without
(bench/results/2026-11-29_h200_b99b296_bench_configs_mlpt_hrm.json), and row-major GEMMs with 97-element rows
are the slow layout the bench's floor had to leave out (bench/NOTES.md, "The floor of a row"). The padded
step has not been timed yet.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .linear_swiglu import linear_swiglu, swiglu_keep_sm90, unsupported_sm90
from .swiglu_linear import down_swiglu_grads


@torch.library.custom_op("trm_fast::recomputed_mlp", mutates_args=())
def recomputed_mlp_fused(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                         backend: str, fused_backward: bool = False) -> torch.Tensor:
    """The forward as the no-grad MLP runs it on `backend` (the gate/up GEMM with SwiGLU where 'auto' measured
    it faster), then cuBLAS. `fused_backward` as for trm_fast.ops.swiglu_linear."""
    return F.linear(linear_swiglu(x, gate_up_weight, backend), down_weight)


@recomputed_mlp_fused.register_fake
def _(x, gate_up_weight, down_weight, backend, fused_backward=False):
    return x.new_empty((*x.shape[:-1], down_weight.shape[0]))


@torch.library.custom_op("trm_fast::recomputed_mlp_backward", mutates_args=())
def recomputed_mlp_backward(dy: torch.Tensor, x: torch.Tensor, gate_up_weight: torch.Tensor,
                            down_weight: torch.Tensor, fused_backward: bool = False
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dgate_up_weight, ddown_weight) from dy (..., N) and the forward's inputs."""
    k = x.shape[-1]
    rows, weight = _aligned(x.reshape(-1, k)), _aligned(gate_up_weight)  # a copy for MLP-t's transposed x
    dy = dy.reshape(-1, down_weight.shape[0])
    dx, dweight, ddown = _grads(dy, rows, weight, down_weight, rows @ weight.t(), fused_backward, in_place=True)
    # contiguous, as the fake says, padded or not
    return dx[:, :k].contiguous().view(x.shape), dweight[:, :k].contiguous(), ddown


def _grads(dy: torch.Tensor, rows: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
           gate_up: torch.Tensor, fused_backward: bool, in_place: bool
           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d rows, dgate_up_weight, ddown_weight) of the MLP from dy (M, N), its input rows (M, K), the weights and the
    pre-activations gate_up (M, 2I); `in_place`: dgate_up is written over gate_up. h's gradient product first, so
    that h is freed before the other two."""
    dgate_up, h = down_swiglu_grads(dy, down_weight, gate_up, fused_backward, in_place=in_place)
    ddown = dy.t() @ h
    del h
    return dgate_up @ gate_up_weight, dgate_up.t() @ rows, ddown


def _aligned(rows: torch.Tensor) -> torch.Tensor:
    """rows (M, K) itself where a row is a multiple of 16 bytes and the layout row-major, else a row-major copy
    padded with zeros to the next such width."""
    per_16_bytes = 16 // rows.element_size()
    k = rows.shape[1]
    if k % per_16_bytes == 0 and rows.stride(1) == 1 and rows.stride(0) == k:
        return rows
    padded = rows.new_zeros(rows.shape[0], -(-k // per_16_bytes) * per_16_bytes)
    padded[:, :k] = rows
    return padded


@recomputed_mlp_backward.register_fake
def _(dy, x, gate_up_weight, down_weight, fused_backward=False):
    return x.new_empty(x.shape), torch.empty_like(gate_up_weight), torch.empty_like(down_weight)


def _setup_context(ctx, inputs, output):
    x, gate_up_weight, down_weight, _, fused_backward = inputs  # the default filled in by the op's schema
    ctx.fused_backward = fused_backward
    ctx.save_for_backward(x, gate_up_weight, down_weight)


def _backward(ctx, dy):
    return (*recomputed_mlp_backward(dy, *ctx.saved_tensors, ctx.fused_backward), None, None)


recomputed_mlp_fused.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("trm_fast::kept_mlp", mutates_args=())
def kept_mlp_fused(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                   fused_backward: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, gate_up): the gate/up GEMM writing gate_up and h in one CUTLASS kernel, then cuBLAS's down projection;
    gate_up (M, 2I) is the backward's. `fused_backward` as for trm_fast.ops.swiglu_linear. x as
    kept_mlp_unsupported allows: bf16 rows with unit stride along K."""
    gate_up, h = swiglu_keep_sm90(x.reshape(-1, x.shape[-1]), gate_up_weight)
    return F.linear(h, down_weight).view(*x.shape[:-1], down_weight.shape[0]), gate_up


@kept_mlp_fused.register_fake
def _(x, gate_up_weight, down_weight, fused_backward=False):
    rows = x.numel() // x.shape[-1]
    return x.new_empty((*x.shape[:-1], down_weight.shape[0])), x.new_empty((rows, gate_up_weight.shape[0]))


@torch.library.custom_op("trm_fast::kept_mlp_backward", mutates_args=())
def kept_mlp_backward(dy: torch.Tensor, x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                      gate_up: torch.Tensor, fused_backward: bool = False
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dgate_up_weight, ddown_weight) from dy (..., N), the forward's inputs and its gate_up, which is left as
    it was (a second backward through a retained graph reads it again)."""
    dy = dy.reshape(-1, down_weight.shape[0])
    dx, dweight, ddown = _grads(dy, x.reshape(-1, x.shape[-1]), gate_up_weight, down_weight, gate_up, fused_backward,
                                in_place=False)
    return dx.view(x.shape), dweight, ddown


@kept_mlp_backward.register_fake
def _(dy, x, gate_up_weight, down_weight, gate_up, fused_backward=False):
    return x.new_empty(x.shape), torch.empty_like(gate_up_weight), torch.empty_like(down_weight)


def _setup_kept(ctx, inputs, output):
    x, gate_up_weight, down_weight, fused_backward = inputs
    gate_up = output[1]
    ctx.fused_backward = fused_backward
    ctx.mark_non_differentiable(gate_up)
    ctx.save_for_backward(x, gate_up_weight, down_weight, gate_up)


def _backward_kept(ctx, dy, _gate_up):
    return (*kept_mlp_backward(dy, *ctx.saved_tensors, ctx.fused_backward), None)


kept_mlp_fused.register_autograd(_backward_kept, setup_context=_setup_kept)


def kept_mlp(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
             fused_backward: bool = False) -> torch.Tensor:
    """The MLP's y through the kept op (its gate_up stays with autograd)."""
    return kept_mlp_fused(x, gate_up_weight, down_weight, fused_backward)[0]


def kept_mlp_unsupported(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                         backend: str) -> Optional[str]:
    """Why kept_mlp cannot take this call, or None: what recomputed_mlp needs, and what Hopper's CUTLASS GEMM needs
    of x and the gate/up weight (trm_fast.ops.linear_swiglu.unsupported_sm90)."""
    return unsupported(x, gate_up_weight, down_weight, backend) or unsupported_sm90(x, gate_up_weight)


def unsupported(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                backend: str) -> Optional[str]:
    """Why the op cannot take this call, or None."""
    why = (_backend.triton_unsupported(x, "x", backend)
           or _backend.unlike(x, gate_up_weight=gate_up_weight, down_weight=down_weight))
    if why is not None:
        return why
    if (x.ndim == 0 or gate_up_weight.ndim != 2 or down_weight.ndim != 2 or gate_up_weight.shape[1] != x.shape[-1]
            or gate_up_weight.shape[0] != 2 * down_weight.shape[1]):
        return (f"need x (..., K), gate_up_weight (2I, K) and down_weight (N, I); got x {tuple(x.shape)}, "
                f"gate_up_weight {tuple(gate_up_weight.shape)}, down_weight {tuple(down_weight.shape)}")
    if x.numel() == 0:
        return f"x is empty (shape {tuple(x.shape)})"
    if not _backend.leading_axes_flatten(x, trailing=2):  # the last two axes may have any strides
        return f"x's leading axes do not flatten to one stride (shape {tuple(x.shape)}, strides {x.stride()})"
    return None
