"""Residual add + RMSNorm, post-norm, no weight: y = rms_norm(x + delta).

    s = x + delta                      (in the activation dtype, as the official model adds)
    y = s / sqrt(mean(s**2, -1) + eps) (in fp32, cast back to the activation dtype)

Backward, with r = rsqrt(mean(s**2) + eps) over a row of width N:
    ds = r * (dy - s * r**2 * mean(dy * s))   and dx = ddelta = ds.

Shapes: x, delta (..., N); the norm runs over the last axis. TRM calls it with N = hidden (512)
after attention and the MLP, and with N = seq_len + puzzle_emb_len (97 for Sudoku) on the
transposed view after MLP-t's token mixing.
Floor per call: 2 reads and 1 write of the activation (3 * rows * N * 2 bytes in bf16), ~4 FLOP/element.
"""

import torch


def rms_norm_reference(hidden: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without weight over the last axis; fp32 math, result in the input dtype."""
    s = hidden.to(torch.float32)
    s = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + eps)
    return s.to(hidden.dtype)


def add_rms_norm_reference(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """rms_norm(x + delta); the add rounds to the activation dtype first, as the official model does."""
    return rms_norm_reference(x + delta, eps)


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor, eps: float, backend: str = "reference") -> torch.Tensor:
    """Post-norm residual: ``rms_norm(x + delta)`` over the last axis."""
    return add_rms_norm_reference(x, delta, eps)
