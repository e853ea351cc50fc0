"""The attention variant's whole post-norm layer for a few puzzles: out = rms_norm(h1 + MLP(h1)) with
h1 = rms_norm(h + attention(h) W_o^T), the block trm_fast.models.layers.Block runs without MLP-t.

At batch 1 the layer is a dozen kernels of a few microseconds each, most of the GPU idle in each (bench/NOTES.md,
"Batch 1"); trm_fast.kernels.small_layer runs it as one persistent kernel of six phases: 23.4 us at batch 1 against
27.8 for the official layer compiled, and the engine's 16-step evaluation of sudoku_attn at batch 1 took 18.69 ms
with it against 19.51 without (H200, bench/results/2026-12-06_h200_34c827d_b1_*). So `auto` runs it (AUTO_OPS),
as `fused` does: the model's Block takes it where `takes` says, at most MAX_ROWS rows and outside autograd.
bench/small_layer.py times it alone against the official layer compiled, and bench/engine_ops.py inside the
engine. The reference is the official model's order, op for op.

Shapes: h (B, S, D); qkv_weight (3D, D), o_weight (D, D), gate_up_weight (2I, D), down_weight (D, I) as
nn.Linear stores them, in h's dtype; cos, sin (S, D / H) fp32 or None (no RoPE).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .. import backend as _backend
from .attention import rope_attention_reference
from .rms_norm import add_rms_norm_reference
from .swiglu import swiglu_reference

# Rows (B S) up to which `takes` lets the model run the kernel: one puzzle of up to 128 positions. At sudoku_attn's
# batch 8 (776 rows) it took 51-65 us a layer against 37.9 for the official layer compiled (H100,
# bench/results/2026-12-06_h100_78bf757_b1_sweep.jsonl): each phase's tiles outnumber the one program per SM.
MAX_ROWS = 128


def small_layer_reference(h: torch.Tensor, qkv_weight: torch.Tensor, o_weight: torch.Tensor,
                          gate_up_weight: torch.Tensor, down_weight: torch.Tensor, cos: Optional[torch.Tensor],
                          sin: Optional[torch.Tensor], num_heads: int, eps: float) -> torch.Tensor:
    """The official layer: QKV projection, RoPE, SDPA, output projection, add + RMSNorm, SwiGLU MLP, add + RMSNorm."""
    b, s, d = h.shape
    qkv = F.linear(h, qkv_weight).view(b, s, 3 * num_heads, d // num_heads)
    if cos is not None:
        cos, sin = cos[:s], sin[:s]
    h1 = add_rms_norm_reference(h, F.linear(rope_attention_reference(qkv, cos, sin, num_heads), o_weight), eps)
    return add_rms_norm_reference(h1, F.linear(swiglu_reference(F.linear(h1, gate_up_weight)), down_weight), eps)


@torch.library.custom_op("trm_fast::small_layer", mutates_args=())
def small_layer_fused(h: torch.Tensor, qkv_weight: torch.Tensor, o_weight: torch.Tensor, gate_up_weight: torch.Tensor,
                      down_weight: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
                      num_heads: int, eps: float) -> torch.Tensor:
    """The Triton kernel, persistent on a GPU, phase by phase under the interpreter; forward only."""
    from ..kernels.small_layer import small_layer as kernel

    return kernel(h, qkv_weight, o_weight, gate_up_weight, down_weight, cos, sin, num_heads, eps)


@small_layer_fused.register_fake
def _(h, qkv_weight, o_weight, gate_up_weight, down_weight, cos, sin, num_heads, eps):
    return torch.empty_like(h, memory_format=torch.contiguous_format)


def unsupported(h: torch.Tensor, qkv_weight: torch.Tensor, o_weight: torch.Tensor, gate_up_weight: torch.Tensor,
                down_weight: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor], num_heads: int,
                backend: str) -> Optional[str]:
    """Why the kernel cannot take this call, or None."""
    from ..kernels.small_layer import BLOCK, MAX_POSITIONS

    why = (_backend.triton_unsupported(h, "h", backend)
           or _backend.unlike(h, "h", qkv_weight=qkv_weight, o_weight=o_weight, gate_up_weight=gate_up_weight,
                              down_weight=down_weight))
    if why is not None:
        return why
    if h.ndim != 3 or h.numel() == 0:
        return f"h must be a non-empty (B, S, D), got shape {tuple(h.shape)}"
    _, positions, width = h.shape
    inner = down_weight.shape[-1]
    if width % BLOCK or inner % BLOCK:
        return f"D ({width}) and the MLP's inner width ({inner}) must be multiples of {BLOCK}"
    if num_heads < 1 or width % num_heads:
        return f"num_heads ({num_heads}) must divide D ({width})"
    head_dim = width // num_heads
    if head_dim < 32 or head_dim & (head_dim - 1):
        return f"the head dim D / num_heads must be a power of two, 32 at least; got {head_dim}"
    if positions > MAX_POSITIONS:
        return f"h has {positions} positions; a program holds at most {MAX_POSITIONS} (one puzzle's scores)"
    expected = {"qkv_weight": (3 * width, width), "o_weight": (width, width), "gate_up_weight": (2 * inner, width),
                "down_weight": (width, inner)}
    for name, t in (("qkv_weight", qkv_weight), ("o_weight", o_weight), ("gate_up_weight", gate_up_weight),
                    ("down_weight", down_weight)):
        if tuple(t.shape) != expected[name]:
            return f"{name} must have shape {expected[name]}, got {tuple(t.shape)}"
        if not t.is_contiguous():
            return f"{name} must be contiguous, got strides {t.stride()}"
    if not h.is_contiguous():
        return f"h must be contiguous, got strides {h.stride()}"
    if (cos is None) != (sin is None):
        return "cos and sin must be given both or neither"
    for name, table in (("cos", cos), ("sin", sin)):
        if table is None:
            continue
        if table.dtype != torch.float32 or table.device != h.device:
            return f"{name} must be float32 on h's device, got {table.dtype} on {table.device}"
        if table.ndim != 2 or table.shape[0] < positions or table.shape[1] != head_dim or table.stride(1) != 1:
            return f"{name} must be (>= S, D / num_heads) = (>= {positions}, {head_dim}) with unit stride on its " \
                   f"last axis, got shape {tuple(table.shape)} and strides {table.stride()}"
    return None


def offered(backend: str, h: torch.Tensor) -> bool:
    """Whether the model may run the whole-layer kernel on h, before it gathers the weights for `takes`: AUTO_OPS
    names `small_layer` (on 'auto' and 'fused' alike; it does by default; read at call time: experiments replace
    AUTO_OPS) and h is (B, S, D) of at most MAX_ROWS rows."""
    return backend != "reference" and "small_layer" in _backend.AUTO_OPS and h.ndim == 3 \
        and h.shape[0] * h.shape[1] <= MAX_ROWS


def takes(h: torch.Tensor, qkv_weight: torch.Tensor, o_weight: torch.Tensor, gate_up_weight: torch.Tensor,
          down_weight: torch.Tensor, cos_sin, num_heads: int, backend: str) -> bool:
    """Whether the model's Block runs this layer as the one kernel: AUTO_OPS names `small_layer` (on 'auto' and
    'fused' alike), autograd does not record, at most MAX_ROWS rows, and the kernel takes the
    call. Otherwise the Block runs its sublayers' ops, which neither warns nor raises here."""
    if not offered(backend, h) or _backend.records(h, qkv_weight, o_weight, gate_up_weight, down_weight):
        return False
    cos, sin = cos_sin if cos_sin is not None else (None, None)
    return unsupported(h, qkv_weight, o_weight, gate_up_weight, down_weight, cos, sin, num_heads, backend) is None


def small_layer(h: torch.Tensor, qkv_weight: torch.Tensor, o_weight: torch.Tensor, gate_up_weight: torch.Tensor,
                down_weight: torch.Tensor, cos_sin, num_heads: int, eps: float, backend: str = "fused") -> torch.Tensor:
    """The layer on h (B, S, D); ``cos_sin`` None or the model's (cos, sin) tables. On 'fused' the kernel runs (an
    error names why where it cannot); on 'auto', once the op is in AUTO_OPS, the kernel where it can, else the
    reference with one warning naming why. Forward only: while autograd records, the reference."""
    cos, sin = cos_sin if cos_sin is not None else (None, None)
    why_not = lambda: unsupported(h, qkv_weight, o_weight, gate_up_weight, down_weight, cos, sin,  # noqa: E731
                                  num_heads, backend)
    if not _backend.records(h, qkv_weight, o_weight, gate_up_weight, down_weight) \
            and _backend.use_fused(backend, "small_layer", why_not):
        return small_layer_fused(h, qkv_weight, o_weight, gate_up_weight, down_weight, cos, sin, num_heads, eps)
    return small_layer_reference(h, qkv_weight, o_weight, gate_up_weight, down_weight, cos, sin, num_heads, eps)
