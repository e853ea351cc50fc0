"""MLP-t's sublayer, the token mix: y = rms_norm over positions of (h + MLP(h) along positions), for h (B, S, D).

The official model (and the reference here, op for op) transposes h to (B, D, S), runs the SwiGLU MLP over the
last axis (width S, inner width I) with the residual add and the RMSNorm over it, and transposes back. The
fused path (trm_fast.kernels.token_mix) computes the same per puzzle in h's own layout, the weights on the
left: a = swiglu(W_gu h[b]), y[b] = rms_norm_columns(h[b] + W_down a): no transposed copy, no gate_up
activation, no projection output and no pre-norm sum in memory (2.1 GB less traffic per call at sudoku_mlpt's
batch 768, bench/NOTES.md).

Shapes: h (B, S, D); gate_up_weight (2I, S), down_weight (S, I) as nn.Linear stores them -> y (B, S, D).
FLOPs per call: 2 B D (2 I S + S I). The fused path is forward only: while autograd records, the reference
runs, with its own ops on the backend asked for (and `recompute`'s op where the model was built with it).
"""

from typing import Optional

import torch

from .. import backend as _backend
from .mlp import swiglu_mlp
from .rms_norm import add_rms_norm


def token_mix_reference(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
                        backend: str = "reference", recompute: bool = False) -> torch.Tensor:
    """The official order: the MLP and add + RMSNorm over the last axis of the transposed view, transposed back."""
    h_t = h.transpose(1, 2)  # (B, D, S): mix along the sequence, normalise over it
    mixed = swiglu_mlp(h_t, gate_up_weight, down_weight, backend=backend, recompute=recompute)
    return add_rms_norm(h_t, mixed, eps, backend=backend).transpose(1, 2)


@torch.library.custom_op("trm_fast::token_mix", mutates_args=())
def token_mix_fused(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """The two Triton kernels, in h's layout; forward only."""
    from ..kernels.token_mix import token_mix as kernels

    return kernels(h, gate_up_weight, down_weight, eps)


@token_mix_fused.register_fake
def _(h, gate_up_weight, down_weight, eps):
    return h.new_empty(h.shape)


def unsupported(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                backend: str) -> Optional[str]:
    """Why the Triton kernels cannot take this call, or None (shapes, dtypes and strides only: torch.compile
    traces it)."""
    from ..kernels.token_mix import MAX_POSITIONS

    why = (_backend.triton_unsupported(h, "h", backend)
           or _backend.unlike(h, "h", gate_up_weight=gate_up_weight, down_weight=down_weight))
    if why is not None:
        return why
    if h.ndim != 3:
        return f"h must be (B, S, D), got shape {tuple(h.shape)}"
    positions = h.shape[1]
    if (gate_up_weight.ndim != 2 or down_weight.ndim != 2 or gate_up_weight.shape[1] != positions
            or gate_up_weight.shape[0] != 2 * down_weight.shape[1] or down_weight.shape[0] != positions):
        return (f"the weights must be gate_up (2I, S) and down (S, I) with S = h's positions ({positions}); got "
                f"{tuple(gate_up_weight.shape)} and {tuple(down_weight.shape)}")
    if positions > MAX_POSITIONS:
        return f"h has {positions} positions, the kernels hold at most {MAX_POSITIONS} in a program"
    if gate_up_weight.stride(-1) != 1 or down_weight.stride(-1) != 1:
        return (f"the weights need unit stride on their last axis, got strides {gate_up_weight.stride()} and "
                f"{down_weight.stride()}")
    return None


def token_mix(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor, eps: float,
              backend: str = "reference", recompute: bool = False) -> torch.Tensor:
    """rms_norm over positions of h + MLP(h) along positions: h (B, S, D), gate_up_weight (2I, S), down_weight
    (S, I) in h's dtype -> (B, S, D). `recompute`: the model was built with it (the backward recomputes what it
    can)."""
    why_not = lambda: unsupported(h, gate_up_weight, down_weight, backend)  # noqa: E731
    if not _backend.records(h, gate_up_weight, down_weight) and _backend.use_fused(backend, "token_mix", why_not):
        return token_mix_fused(h, gate_up_weight, down_weight, eps)
    return token_mix_reference(h, gate_up_weight, down_weight, eps, backend, recompute)
