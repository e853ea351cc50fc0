"""The MLP's second half for training: SwiGLU, then the down projection, y = swiglu(gate_up) W^T, keeping
gate_up alone for the backward.

Shapes: gate_up (..., 2I) whose leading axes flatten to one row stride, weight (N, I) -> y (..., N).
Autograd through the two ops keeps gate_up (for SwiGLU's backward) and h = swiglu(gate_up) (for the weight's
gradient): 3I elements per row. This op keeps gate_up only and writes h again in SwiGLU's backward kernel, which
reads gate_up anyway: per sudoku_attn layer at batch 768, 229 MB less held until the backward (3 of the 17
(B, S, D) tensors a layer keeps, bench/NOTES.md) for one more 229 MB write, and the same bits (the kernel
recomputes h with the forward's expression). Measured on an H200 (sudoku_attn, batch 768, compiled forward +
backward, bench/results/2026-11-29_h200_e45b3cd_memory.jsonl): 14.3 against 17.3 GiB held after the forward,
15.3 against 17.8 GiB at the step's peak, 92.1 against 91.2 ms. 'auto' runs it (trm_fast.backend.AUTO_OPS)
except on MLP-t's token mix (trm_fast.ops.mlp says why).

Backward, with dy (M, N) and gate_up (M, 2I) as rows:
    dh = dy W                                     (M, I)
    dgate_up, h = swiglu_backward(dh, gate_up)    one Triton kernel, h as the forward computed it
    dW = dy^T h                                   (N, I)
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .swiglu import _rows, swiglu, unsupported as swiglu_unsupported


@torch.library.custom_op("trm_fast::swiglu_linear", mutates_args=())
def swiglu_linear_fused(gate_up: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """SwiGLU's Triton kernel, then cuBLAS."""
    from ..kernels.swiglu import swiglu_fwd

    h = swiglu_fwd(_rows(gate_up))
    return F.linear(h, weight).view(*gate_up.shape[:-1], weight.shape[0])


@swiglu_linear_fused.register_fake
def _(gate_up, weight):
    return gate_up.new_empty((*gate_up.shape[:-1], weight.shape[0]))


@torch.library.custom_op("trm_fast::swiglu_backward_with_h", mutates_args=())
def swiglu_backward_with_h(dh: torch.Tensor, gate_up: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dgate_up (M, 2I), h (M, I)) from dh and gate_up as rows: SwiGLU's backward, and its forward again."""
    from ..kernels.swiglu import swiglu_bwd

    h = gate_up.new_empty((gate_up.shape[0], gate_up.shape[1] // 2))
    return swiglu_bwd(dh, gate_up, h_out=h), h


@swiglu_backward_with_h.register_fake
def _(dh, gate_up):
    return torch.empty_like(gate_up), gate_up.new_empty((gate_up.shape[0], gate_up.shape[1] // 2))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    gate_up, weight = ctx.saved_tensors
    rows = _rows(gate_up)
    dy = dy.reshape(-1, weight.shape[0])
    dgate_up, h = swiglu_backward_with_h(dy @ weight, rows)
    dweight = dy.t() @ h if ctx.needs_input_grad[1] else None
    return dgate_up.view(gate_up.shape), dweight


swiglu_linear_fused.register_autograd(_backward, setup_context=_setup_context)


def unsupported(gate_up: torch.Tensor, weight: torch.Tensor, backend: str) -> Optional[str]:
    """Why the op cannot take this call, or None."""
    why = swiglu_unsupported(gate_up, backend)
    if why is not None:
        return why
    if weight.device != gate_up.device or weight.dtype != gate_up.dtype:
        return (f"weight ({weight.dtype} on {weight.device}) and gate_up ({gate_up.dtype} on {gate_up.device}) "
                "must share dtype and device")
    if weight.ndim != 2 or 2 * weight.shape[1] != gate_up.shape[-1]:
        return (f"weight must be (N, I) with 2I = gate_up's last axis; got weight {tuple(weight.shape)}, "
                f"gate_up {tuple(gate_up.shape)}")
    return None


def swiglu_linear_reference(gate_up: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """The model's unfused path: SwiGLU (its own op on `backend`), then the projection."""
    return F.linear(swiglu(gate_up, backend=backend), weight)


def swiglu_linear(gate_up: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """``F.linear(swiglu(gate_up), weight)``. The op keeps gate_up only, so it runs only while autograd records;
    otherwise (and where it cannot run) the two ops do."""
    if _backend.records(gate_up, weight) and _backend.use_fused(backend, "swiglu_linear",
                                                               lambda: unsupported(gate_up, weight, backend)):
        return swiglu_linear_fused(gate_up, weight)
    return swiglu_linear_reference(gate_up, weight, backend)
