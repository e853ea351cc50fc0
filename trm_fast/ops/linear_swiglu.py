"""The MLP's first half: the gate/up projection and SwiGLU, h = silu(x W_gate^T) * (x W_up^T).

Shapes: x (..., R, K) with any strides on its last two axes (MLP-t's transposed view too), weight (2N, K)
(the gate_up projection's, gate rows first) -> h (..., R, N) contiguous.
FLOPs per call: 4 M N K for M rows of x. The fused path (trm_fast.kernels.linear_swiglu) applies SwiGLU to
the GEMM's tiles before they leave the chip, so the (M, 2N) gate_up activation is never written nor read
back: per sudoku_attn layer at batch 768 that is 915 MB less traffic and one kernel fewer.

The fused path is forward only: while autograd records (grad mode on and x or the weight requiring grad)
the reference runs, with its own SwiGLU op (trm_fast.ops.swiglu) on the backend asked for.
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .swiglu import swiglu


def linear_swiglu_reference(x: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """The model's unfused path: the projection (M, 2N) in x's dtype, then SwiGLU on it."""
    return swiglu(F.linear(x, weight), backend=backend)


@torch.library.custom_op("trm_fast::linear_swiglu", mutates_args=())
def linear_swiglu_fused(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The Triton kernel, on x as (B, R, K) with any strides; forward only."""
    from ..kernels.linear_swiglu import linear_swiglu as kernel

    shape = (*x.shape[:-1], weight.shape[0] // 2)
    while x.ndim < 3:
        x = x.unsqueeze(0)
    if x.ndim > 3:  # leading axes that flatten to one stride (unsupported() checks): a view
        x = x.reshape(-1, *x.shape[-2:])
    return kernel(x, weight).view(shape)


@linear_swiglu_fused.register_fake
def _(x, weight):
    return x.new_empty((*x.shape[:-1], weight.shape[0] // 2))


def unsupported(x: torch.Tensor, weight: torch.Tensor, backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None."""
    why = _backend.triton_unsupported(x, "x", backend)
    if why is not None:
        return why
    if weight.device != x.device:
        return f"weight is on {weight.device}, x on {x.device}"
    if weight.dtype != x.dtype:
        return f"weight ({weight.dtype}) and x ({x.dtype}) must have one dtype"
    if weight.ndim != 2 or weight.shape[0] % 2 or x.ndim == 0 or weight.shape[1] != x.shape[-1]:
        return (f"weight must be (2N, K) with K = x's last axis; got weight {tuple(weight.shape)}, "
                f"x {tuple(x.shape)}")
    if x.numel() == 0:
        return "x is empty"
    if weight.stride(-1) != 1:
        return f"weight needs unit stride on its last axis, got strides {weight.stride()}"
    if not _backend.leading_axes_flatten(x, trailing=2):  # the last two axes may have any strides
        return f"x's leading axes do not flatten to one stride (shape {tuple(x.shape)}, strides {x.stride()})"
    return None


def _not_measured_faster(x: torch.Tensor) -> bool:
    """Where 'auto' keeps the unfused pair on a GPU: fp32 (the kernel's exact fp32 dots were not measured
    against cuBLAS), MLP-t's transposed x (not unit stride along K: only the pointer kernel takes it), or a
    GPU older than Hopper (no TMA). Dtype, strides and the device's properties only: torch.compile traces it."""
    return x.device.type == "cuda" and (x.dtype == torch.float32 or x.stride(-1) != 1
                                        or torch.cuda.get_device_properties(x.device).major < 9)


def linear_swiglu(x: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """``swiglu(F.linear(x, weight))``: x (..., K), weight (2N, K) in x's dtype -> (..., N).

    'auto' runs the persistent TMA kernel (row-major x on Hopper): on an H200, with two programs per SM, it
    took 427 us at sudoku_attn's batch 768 where cuBLAS's GEMM and inductor's SwiGLU take 528 us together,
    1.04 against 1.23 ms at arc_attn's batch 192 (Triton's do_bench medians), and the engine's 16-step
    evaluation took 850 ms with it against 916 ms without (bench/results/2026-11-29_h200_7ef693d_*). The
    pointer kernel, the only one for MLP-t's transposed x, lost (918 against 699 us at sudoku_mlpt's token
    MLP): there, in fp32 and before Hopper 'auto' keeps the unfused pair, and only 'fused' runs a kernel. The
    kernels are forward only: while autograd records, the reference runs."""
    recording = _backend.records(x, weight)
    why_not = lambda: unsupported(x, weight, backend)  # noqa: E731
    slower = backend == "auto" and _not_measured_faster(x)
    if not recording and not slower and _backend.use_fused(backend, "linear_swiglu", why_not):
        return linear_swiglu_fused(x, weight)
    return linear_swiglu_reference(x, weight, backend)
