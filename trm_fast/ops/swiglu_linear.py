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
With `fused_backward` (where AUTO_OPS names `down_swiglu_backward` and `fused_backward_unsupported` allows:
16-bit, Hopper, 16-byte aligned widths) the first two lines are one Triton kernel, kernels/down_swiglu_backward.py:
dh stays on the chip, 4 I bytes a row less traffic in bf16 and one kernel fewer.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .swiglu import _rows, swiglu, unsupported as swiglu_unsupported


@torch.library.custom_op("trm_fast::swiglu_linear", mutates_args=())
def swiglu_linear_fused(gate_up: torch.Tensor, weight: torch.Tensor, fused_backward: bool = False) -> torch.Tensor:
    """SwiGLU's Triton kernel, then cuBLAS. `fused_backward`: the backward's dh GEMM and SwiGLU's backward run as
    one kernel (down_swiglu_grads)."""
    from ..kernels.swiglu import swiglu_fwd

    h = swiglu_fwd(_rows(gate_up))
    return F.linear(h, weight).view(*gate_up.shape[:-1], weight.shape[0])


@swiglu_linear_fused.register_fake
def _(gate_up, weight, fused_backward=False):
    return gate_up.new_empty((*gate_up.shape[:-1], weight.shape[0]))


def down_swiglu_grads(dy: torch.Tensor, weight: torch.Tensor, gate_up: torch.Tensor, fused_backward: bool,
                      in_place: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dgate_up (M, 2I), h (M, I)) from dy (M, N), the down projection's weight (N, I) and gate_up (M, 2I) as
    rows: dh = dy W, then SwiGLU's backward and its forward again, as two kernels or (`fused_backward`) one.
    `in_place`: dgate_up is written over gate_up. Where the fused kernel cannot take the tensors after all (the
    data pointers' alignment, which no trace sees), the two kernels run, with one warning naming why."""
    from ..kernels.swiglu import swiglu_bwd

    if fused_backward:
        from ..kernels.down_swiglu_backward import down_swiglu_backward, unsupported as kernel_unsupported

        dy = dy.contiguous()  # autograd may hand over an expanded dy; the accelerator loads unit-stride rows
        why = kernel_unsupported(dy, weight, gate_up)
        if why is None:
            return down_swiglu_backward(dy, weight, gate_up, dgate_up=gate_up if in_place else None)
        _backend.warn_fallback("down_swiglu_backward", why)
    dh = dy @ weight
    # in place: each element of gate_up and dh is read before the same program writes its gradient and h there
    return swiglu_bwd(dh, gate_up, out=gate_up if in_place else None, h_out=dh), dh


@torch.library.custom_op("trm_fast::down_swiglu_backward", mutates_args=())
def down_swiglu_backward(dy: torch.Tensor, weight: torch.Tensor, gate_up: torch.Tensor, fused_backward: bool
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """`down_swiglu_grads` as one op: (dgate_up (M, 2I), h (M, I)), gate_up left as it was."""
    return down_swiglu_grads(dy, weight, gate_up, fused_backward)


@down_swiglu_backward.register_fake
def _(dy, weight, gate_up, fused_backward):
    return (torch.empty_like(gate_up, memory_format=torch.contiguous_format),
            gate_up.new_empty((gate_up.shape[0], gate_up.shape[1] // 2)))


def _setup_context(ctx, inputs, output):
    gate_up, weight, fused_backward = inputs  # the default filled in by the op's schema
    ctx.fused_backward = fused_backward
    ctx.save_for_backward(gate_up, weight)


def _backward(ctx, dy):
    gate_up, weight = ctx.saved_tensors
    rows = _rows(gate_up)
    dy = dy.reshape(-1, weight.shape[0])
    dgate_up, h = down_swiglu_backward(dy, weight, rows, ctx.fused_backward)
    dweight = dy.t() @ h if ctx.needs_input_grad[1] else None
    return dgate_up.view(gate_up.shape), dweight, None


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


def fused_backward_unsupported(weight: torch.Tensor) -> Optional[str]:
    """Why the fused backward kernel (kernels/down_swiglu_backward.py) cannot take the calls of an MLP whose down
    projection has this weight (N, I), or None; the op itself must take them (`unsupported`, or
    recomputed_mlp's). Shapes, dtype and device only: torch.compile traces it; the kernel checks the data
    pointers' alignment when it runs."""
    if weight.dtype not in (torch.bfloat16, torch.float16):
        # measured in bf16 alone; in fp32 its products would run as IEEE FMAs, unmeasured against cuBLAS's
        return f"the kernel runs 16-bit inputs (bfloat16, float16), got {weight.dtype}"
    if weight.device.type == "cuda" and torch.cuda.get_device_properties(weight.device).major < 9:
        return "the kernel loads through the tensor memory accelerator: a Hopper or newer GPU"
    n, inner = weight.shape
    if n * weight.element_size() % 16 or inner * weight.element_size() % 16:
        return f"the widths must be multiples of 16 bytes (the accelerator's rule), got N = {n}, I = {inner}"
    return None


def swiglu_linear_reference(gate_up: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """The model's unfused path: SwiGLU (its own op on `backend`), then the projection."""
    return F.linear(swiglu(gate_up, backend=backend), weight)


def swiglu_linear(gate_up: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """``F.linear(swiglu(gate_up), weight)``. The op keeps gate_up only, so it runs only while autograd records;
    otherwise (and where it cannot run) the two ops do."""
    if _backend.records(gate_up, weight) and _backend.use_fused(backend, "swiglu_linear",
                                                               lambda: unsupported(gate_up, weight, backend)):
        fused_backward = _backend.offers(backend, "down_swiglu_backward", lambda: fused_backward_unsupported(weight))
        return swiglu_linear_fused(gate_up, weight, fused_backward)
    return swiglu_linear_reference(gate_up, weight, backend)
