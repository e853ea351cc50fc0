"""The SwiGLU MLP, MLP(x) = swiglu(x W_gate_up^T) W_down^T, and the post-norm block's second half,
rms_norm(x + MLP(x)): which ops run them.

While autograd records (the gradient-carrying cycle of a training step), a model built with `recompute` asks
for trm_fast.ops.recomputed_mlp, which keeps x alone and runs the gate/up projection again in the backward
(on a GPU: trm_fast.backend.recomputes_in_ops). Otherwise, on Hopper where AUTO_OPS names it, kept_mlp (same
module): the gate/up GEMM writes gate_up for the backward and h in one kernel. Otherwise the MLP is the gate/up
projection, then trm_fast.ops.swiglu_linear, which keeps gate_up and not swiglu's output for the backward.
Without autograd the forward-only GEMM-epilogue kernels may run: the gate/up projection with SwiGLU
(trm_fast.ops.linear_swiglu), and in the block the down projection with the residual add and the norm
(trm_fast.ops.linear_add_rms_norm). On the reference backend both are the same ops in the same order as
the official model.
"""

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .linear_add_rms_norm import linear_add_rms_norm
from .linear_swiglu import linear_swiglu
from .recomputed_mlp import kept_mlp, kept_mlp_unsupported, recomputed_mlp_fused
from .recomputed_mlp import unsupported as recomputed_mlp_unsupported
from .rms_norm import add_rms_norm
from .swiglu_linear import fused_backward_unsupported as swiglu_linear_backward_unsupported
from .swiglu_linear import swiglu_linear, swiglu_linear_reference


def swiglu_mlp(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
               backend: str = "reference", recompute: bool = False) -> torch.Tensor:
    """MLP(x): x (..., K) with any strides on its last two axes, gate_up_weight (2I, K) and down_weight (N, I)
    in x's dtype -> (..., N). `recompute`: the model was built with it (the backward recomputes what it can).

    'auto' keeps MLP-t's token mix (x transposed, not unit stride along K) on the two ops: there the op that
    keeps gate_up alone cost more time than it saved memory is worth (sudoku_mlpt's compiled forward +
    backward at batch 768 on an H200: 128.3 against 120.7 ms for 19.4 against 27.7 GiB held, most of it the
    token mix's; sudoku_attn's channel MLP: 92.1 against 91.2 ms for 14.3 against 17.3 GiB,
    bench/results/2026-11-29_h200_e45b3cd_memory.jsonl)."""
    if _backend.records(x, gate_up_weight, down_weight):
        why_not = lambda: recomputed_mlp_unsupported(x, gate_up_weight, down_weight, backend)  # noqa: E731
        fused_backward = lambda: _backend.offers(  # noqa: E731
            backend, "down_swiglu_backward", lambda: swiglu_linear_backward_unsupported(down_weight))
        if (recompute and _backend.recomputes_in_ops(backend, x.device)
                and _backend.use_fused(backend, "recomputed_mlp", why_not)):
            return recomputed_mlp_fused(x, gate_up_weight, down_weight, backend, fused_backward())
        if _backend.offers(backend, "kept_mlp", lambda: kept_mlp_unsupported(x, gate_up_weight, down_weight, backend)):
            return kept_mlp(x, gate_up_weight, down_weight, fused_backward())
        gate_up = F.linear(x, gate_up_weight)
        if backend == "auto" and x.stride(-1) != 1:
            return swiglu_linear_reference(gate_up, down_weight, backend)
        return swiglu_linear(gate_up, down_weight, backend)
    return F.linear(linear_swiglu(x, gate_up_weight, backend), down_weight)


def swiglu_mlp_add_rms_norm(x: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
                            backend: str = "reference", recompute: bool = False) -> torch.Tensor:
    """rms_norm(x + MLP(x)) over the last axis: x (..., N), gate_up_weight (2I, N), down_weight (N, I)."""
    if _backend.records(x, gate_up_weight, down_weight):
        return add_rms_norm(x, swiglu_mlp(x, gate_up_weight, down_weight, backend, recompute), eps, backend=backend)
    return linear_add_rms_norm(linear_swiglu(x, gate_up_weight, backend), down_weight, x, eps, backend=backend)
