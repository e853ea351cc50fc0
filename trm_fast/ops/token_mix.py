"""MLP-t's sublayer, the token mix: y = rms_norm over positions of (h + MLP(h) along positions), for h (B, S, D).

The official model (and the reference here, op for op) transposes h to (B, D, S), runs the SwiGLU MLP over the
last axis (width S, inner width I) with the residual add and the RMSNorm over it, and transposes back. The
fused path (trm_fast.kernels.token_mix, one Triton kernel) computes the same per puzzle in h's own layout, the
weights on the left: a = swiglu(W_gu h[b]), y[b] = rms_norm_columns(h[b] + W_down a): no transposed copy, no
gate_up activation, no SwiGLU product, no projection output and no pre-norm sum in memory (h read and y written,
where the official order moves about 3 GB per call at sudoku_mlpt's batch 768, bench/NOTES.md). On an H100 there
it took 0.70 against 1.20 ms, and the engine's 16-step evaluation 988 against 1,425 ms without it
(bench/results/2026-12-06_h100_7bd53a2_*).

Shapes: h (B, S, D); gate_up_weight (2I, S), down_weight (S, I) as nn.Linear stores them -> y (B, S, D).
FLOPs per call: 2 B D (2 I S + S I). The fused path's backward (`_backward`) keeps no activation of its own and
runs the gate/up projection again, whether or not the model was built with `recompute`; the reference's follows
`recompute` as the channel MLP does (trm_fast.ops.swiglu_mlp).
"""

from typing import Optional, Tuple

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
                    eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): the Triton kernel, in h's layout; rstd (B, D), fp32, each column's 1 / rms."""
    from ..kernels.token_mix import token_mix as kernels

    return kernels(h, gate_up_weight, down_weight, eps)


@token_mix_fused.register_fake
def _(h, gate_up_weight, down_weight, eps):
    return h.new_empty(h.shape), h.new_empty((h.shape[0], h.shape[2]), dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    h, gate_up_weight, down_weight, _ = inputs
    y, rstd = output
    ctx.mark_non_differentiable(rstd)
    ctx.save_for_backward(h, gate_up_weight, down_weight, y, rstd)


def _columns(t: torch.Tensor) -> torch.Tensor:
    """(B, R, D) -> (R, B D): every puzzle's columns side by side, so that each GEMM of the backward is one GEMM."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def _backward(ctx, dy, _drstd):
    """Keeps nothing the forward did not have at hand (h, y and one fp32 per column): the gate/up projection runs
    again (2 I S FLOPs per column, a third of the forward's), so the sublayer holds no activation of its own
    between the forward and the backward, where the official order keeps gate_up and the SwiGLU product
    (3 I elements per column: 1.2 GB per layer, 17 GB across sudoku_mlpt's 14 gradient layers at batch 768;
    measured, its training step's peak fell from 26.9 to 12.1 GiB on an H100). The GEMMs run on
    (S, B D) copies of h and ds, each as one GEMM whose weight gradients sum over every column in fp32."""
    h, gate_up_weight, down_weight, y, rstd = ctx.saved_tensors
    batch, positions, width = h.shape
    # the norm over positions, per column: ds = rstd (dy - y mean(dy y))
    dyf, yf = dy.float(), y.float()
    ds = (rstd[:, None, :] * (dyf - yf * (dyf * yf).mean(1, keepdim=True))).to(h.dtype)
    h_cols, ds_cols = _columns(h), _columns(ds)
    gate, up = (gate_up_weight @ h_cols).float().chunk(2)  # (I, B D) each, rounded as the forward's
    sig = torch.sigmoid(gate)
    a = (gate * sig * up).to(h.dtype)
    da = (down_weight.t() @ ds_cols).float()
    dgate_up = torch.cat((da * up * sig * (1 + gate * (1 - sig)), da * gate * sig)).to(h.dtype)
    dh = ds + (gate_up_weight.t() @ dgate_up).view(positions, batch, width).transpose(0, 1)
    return dh, dgate_up @ h_cols.t(), ds_cols @ a.t(), None


token_mix_fused.register_autograd(_backward, setup_context=_setup_context)


def unsupported(h: torch.Tensor, gate_up_weight: torch.Tensor, down_weight: torch.Tensor,
                backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None (shapes, dtypes and strides only: torch.compile
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
    if _backend.use_fused(backend, "token_mix", why_not):
        return token_mix_fused(h, gate_up_weight, down_weight, eps)[0]
    return token_mix_reference(h, gate_up_weight, down_weight, eps, backend, recompute)
