"""The SwiGLU MLP, MLP(x) = swiglu(x W_gate_up^T) W_down^T, and the post-norm block's second half,
rms_norm(x + MLP(x)): which ops run them.

While autograd records (the gradient-carrying cycle of a training step), the MLP is the gate/up projection,
then trm_fast.ops.swiglu_linear, which keeps gate_up and not swiglu's output for the backward. Otherwise
the forward-only GEMM-epilogue kernels may run: the gate/up projection with SwiGLU
(trm_fast.ops.linear_swiglu), and in the block the down projection with the residual add and the norm
(trm_fast.ops.linear_add_rms_norm). On the reference backend both are the same ops in the same order as
the official model.
"""

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .linear_add_rms_norm import linear_add_rms_norm
from .linear_swiglu import linear_swiglu
from .rms_norm import add_rms_norm
from .swiglu_linear import swiglu_linear


def swiglu_mlp(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
               backend: str = "reference") -> torch.Tensor:
    """MLP(x): x (..., K) with any strides on its last two axes, gate_up_weight (2I, K) and down_weight (N, I)
    in x's dtype -> (..., N)."""
    if _backend.records(x, gate_up_weight, down_weight):
        return swiglu_linear(F.linear(x, gate_up_weight), down_weight, backend)
    return F.linear(linear_swiglu(x, gate_up_weight, backend), down_weight)


def swiglu_mlp_add_rms_norm(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
                            backend: str = "reference") -> torch.Tensor:
    """rms_norm(x + MLP(x)) over the last axis: x (..., N), gate_up_weight (2I, N), down_weight (N, I)."""
    if _backend.records(x, gate_up_weight, down_weight):
        return add_rms_norm(x, swiglu_mlp(x, gate_up_weight, down_weight, backend), eps, backend=backend)
    return linear_add_rms_norm(linear_swiglu(x, gate_up_weight, backend), down_weight, x, eps, backend=backend)
