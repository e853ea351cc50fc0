"""Bidirectional multi-head attention: softmax(q k^T / sqrt(D)) v per head.

Shapes: q, k, v (B, S, H, D) -> (B, S, H * D).
FLOPs per call: 4 * B * H * S^2 * D (two matmuls); bytes: q, k, v in and the output out
when the score matrix stays on chip.
"""

import torch
import torch.nn.functional as F


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PyTorch's scaled_dot_product_attention on the head-major views, as the official model calls it."""
    b, s, h, d = q.shape
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).reshape(b, s, h * d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """Non-causal attention over (B, S, H, D) inputs; returns (B, S, H * D)."""
    return attention_reference(q, k, v)
