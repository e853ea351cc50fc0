"""SwiGLU activation: h = silu(gate) * up, where gate_up = [gate | up] along the last axis.

    silu(g) = g * sigmoid(g)
Backward: dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))),  dup = dh * silu(g).

Shapes: gate_up (..., 2I) -> h (..., I). For TRM's MLP I = 1536 (hidden 512, expansion 4);
for MLP-t at Sudoku width 97, I = 512.
Floor per call: read 2I, write I elements (6I bytes per row in bf16), ~5 FLOP per output.
The fused path is the Triton kernel in trm_fast.kernels.swiglu (fp32 math, one rounding at the
end, where the reference rounds silu(gate) before the product).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .. import backend as _backend


def swiglu_reference(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up in the input dtype, rounding as the official model does."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@torch.library.custom_op("trm_fast::swiglu", mutates_args=())
def swiglu_fused(gate_up: torch.Tensor) -> torch.Tensor:
    """The Triton kernel; gate_up (..., 2I) whose leading axes flatten to one row stride."""
    from ..kernels.swiglu import swiglu_fwd

    two_i = gate_up.shape[-1]
    h = swiglu_fwd(_rows(gate_up))
    return h.view(*gate_up.shape[:-1], two_i // 2)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t as (M, width) with unit stride along the width, as the kernels index it (a copy only if needed)."""
    rows = t.reshape(-1, t.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


@swiglu_fused.register_fake
def _(gate_up):
    return gate_up.new_empty((*gate_up.shape[:-1], gate_up.shape[-1] // 2))


@torch.library.custom_op("trm_fast::swiglu_backward", mutates_args=())
def swiglu_backward_fused(dh: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
    from ..kernels.swiglu import swiglu_bwd

    # autograd may hand over any layout of dh (expanded, transposed): the kernel needs unit stride
    dgu = swiglu_bwd(_rows(dh), _rows(gate_up))
    return dgu.view(gate_up.shape)


@swiglu_backward_fused.register_fake
def _(dh, gate_up):
    return torch.empty_like(gate_up, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _backward(ctx, dh):
    (gate_up,) = ctx.saved_tensors
    return swiglu_backward_fused(dh, gate_up)


swiglu_fused.register_autograd(_backward, setup_context=_setup_context)


def unsupported(gate_up: torch.Tensor, backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None."""
    why = _backend.triton_unsupported(gate_up, "gate_up", backend)
    if why is not None:
        return why
    if gate_up.ndim == 0 or gate_up.shape[-1] % 2:
        return f"gate_up's last axis must have even length, got shape {tuple(gate_up.shape)}"
    if gate_up.numel() == 0:
        return "gate_up is empty"
    if gate_up.stride(-1) != 1:
        return f"gate_up's last axis must have unit stride, got strides {gate_up.stride()}"
    if not _backend.leading_axes_flatten(gate_up, trailing=1):
        return f"gate_up's leading axes do not flatten to one row stride (strides {gate_up.stride()})"
    return None


def swiglu(gate_up: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """``silu(gate) * up`` with ``gate, up = gate_up.chunk(2, -1)``."""
    if _backend.leave_to_inductor(backend, gate_up):
        return swiglu_reference(gate_up)
    if _backend.use_fused(backend, "swiglu", lambda: unsupported(gate_up, backend)):
        return swiglu_fused(gate_up)
    return swiglu_reference(gate_up)
