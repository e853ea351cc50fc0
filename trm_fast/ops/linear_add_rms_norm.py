"""The projection that closes a post-norm sublayer, with the residual add and the RMSNorm after it:
y = rms_norm(residual + x W^T), the attention's output projection and the MLP's down projection.

Shapes: x (B, R, K), weight (N, K), residual (B, R, N) -> y (B, R, N). FLOPs per call: 2 M N K for M = B R
rows. The fused path (trm_fast.kernels.linear_add_rms_norm) keeps each row's N <= 512 outputs in one
program, so the projection's output and the pre-norm sum never reach memory: 2 M N elements less traffic
and one kernel fewer per call.

The post-norm block (models/layers.Block) hands it o_proj's and down_proj's weights. On an H200 the
kernel loses to cuBLAS plus inductor's add + RMSNorm (227 against 161 us for the o projection, 432 against
261 us for the down projection at sudoku_attn's batch 768), and the engine's 16-step evaluation took 914 ms
with it against 832 ms without (bench/results/2026-11-29_h200_dca1e8d_*): 'auto' does not run it
(trm_fast.backend.AUTO_OPS), 'fused' does. The fused path is forward only: while autograd records, the
reference runs, with its own add + RMSNorm op on the backend asked for. The reference is the model's unfused
path op for op (F.linear, then add + RMSNorm), so the reference backend stays bit-identical to the official
model.
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .rms_norm import add_rms_norm


def linear_add_rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, eps: float,
                                  backend: str = "reference") -> torch.Tensor:
    """The model's unfused path: the projection in x's dtype, then add + RMSNorm with the residual."""
    return add_rms_norm(residual, F.linear(x, weight), eps, backend=backend)


@torch.library.custom_op("trm_fast::linear_add_rms_norm", mutates_args=())
def linear_add_rms_norm_fused(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor,
                              eps: float) -> torch.Tensor:
    """The Triton kernel; forward only. Where the tensors are not 16-byte aligned (a run-time check, so not in
    `unsupported`), the reference computes it, with one warning."""
    from ..kernels.linear_add_rms_norm import linear_add_rms_norm as kernel, loadable

    residual = residual.contiguous()  # MLP-t's channel MLP may get a transposed-back view on some paths
    out = torch.empty_like(residual)
    if loadable(x, weight, residual, out):
        return kernel(x, weight, residual, eps, out=out)
    _backend.warn_fallback("linear_add_rms_norm", "x, weight, the residual or the output is not 16-byte aligned")
    return linear_add_rms_norm_reference(x, weight, residual, eps)


@linear_add_rms_norm_fused.register_fake
def _(x, weight, residual, eps):
    return torch.empty_like(residual, memory_format=torch.contiguous_format)


def unsupported(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None. Strides and shapes only (torch.compile traces
    this); the alignment is checked at run time (`linear_add_rms_norm_fused`)."""
    from ..kernels import tma_gemm

    why = _backend.triton_unsupported(x, "x", backend) or _backend.unlike(x, weight=weight, residual=residual)
    if why is not None:
        return why
    if x.ndim != 3 or weight.ndim != 2 or weight.shape[1] != x.shape[2]:
        return f"x must be (B, R, K) and weight (N, K); got x {tuple(x.shape)}, weight {tuple(weight.shape)}"
    n = weight.shape[0]
    if tuple(residual.shape) != (*x.shape[:2], n):
        return f"residual must be (B, R, N) = {(*x.shape[:2], n)}, got {tuple(residual.shape)}"
    if n > 512:
        return f"N must be at most 512 (a program holds whole rows), got {n}"
    if x.numel() == 0:
        return "x is empty"
    if weight.stride(1) != 1 or not tma_gemm.row_major(x):
        return (f"the TMA kernel needs row-major x and weight on a Hopper or newer GPU; got x strides {x.stride()}, "
                f"weight strides {weight.stride()}")
    return None


def linear_add_rms_norm(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, eps: float,
                        backend: str = "reference") -> torch.Tensor:
    """``add_rms_norm(residual, F.linear(x, weight), eps)``: x (B, R, K), weight (N, K) in x's dtype, residual
    (B, R, N) -> (B, R, N). The kernel runs on 'fused' where it can (forward only)."""
    why_not = lambda: unsupported(x, weight, residual, backend)  # noqa: E731
    if not _backend.records(x, weight, residual) and _backend.use_fused(backend, "linear_add_rms_norm", why_not):
        return linear_add_rms_norm_fused(x, weight, residual, eps)
    return linear_add_rms_norm_reference(x, weight, residual, eps, backend)
