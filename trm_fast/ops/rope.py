"""Rotary position embedding on queries and keys (the rotate-half layout of the official code).

    q' = q * cos + rotate_half(q) * sin,   rotate_half([a | b]) = [-b | a]
computed in fp32 (the dtype of the cos/sin tables) and cast back.

Shapes: q, k (B, S, H, D); cos, sin (S, D), fp32.
Floor per call: read and write q and k once (4 * B*S*H*D elements), ~3 FLOP per element.
"""

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_reference(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Rotate q and k by position; fp32 math, results in the input dtype."""
    dtype = q.dtype
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (S, 1, D): broadcast over heads
    q32, k32 = q.to(cos.dtype), k.to(cos.dtype)
    q_out = q32 * cos + _rotate_half(q32) * sin
    k_out = k32 * cos + _rotate_half(k32) * sin
    return q_out.to(dtype), k_out.to(dtype)

