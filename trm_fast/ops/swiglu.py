"""SwiGLU activation: h = silu(gate) * up, where gate_up = [gate | up] along the last axis.

    silu(g) = g * sigmoid(g)
Backward: dgate = dh * up * sigmoid(g) * (1 + g * (1 - sigmoid(g))),  dup = dh * silu(g).

Shapes: gate_up (..., 2I) -> h (..., I). For TRM's MLP I = 1536 (hidden 512, expansion 4);
for MLP-t at Sudoku width 97, I = 512.
Floor per call: read 2I, write I elements (6I bytes per row in bf16), ~5 FLOP per output.
"""

import torch
import torch.nn.functional as F


def swiglu_reference(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up in the input dtype, rounding as the official model does."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def swiglu(gate_up: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """``silu(gate) * up`` with ``gate, up = gate_up.chunk(2, -1)``."""
    return swiglu_reference(gate_up)
