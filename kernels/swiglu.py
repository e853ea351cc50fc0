"""SwiGLU activation in Triton: h = silu(gate) * up, with gate_up = [gate | up] along the last axis.

Forward, per element (fp32 math):   s = sigmoid(g);  h = g * s * u
Backward, given dh:                 dg = dh * u * s * (1 + g * (1 - s));  du = dh * g * s
The backward can also write h again, bit for bit the forward's (same fp32 expression, one rounding), for a
caller that kept gate_up but not h (trm_fast.ops.swiglu_linear): one more (M, I) write instead of a stored h.

Shapes: gate_up (M, 2I) with unit stride along the last axis and any row stride; h (M, I)
contiguous; dgate_up (M, 2I) contiguous. TRM's MLP: M = B * 97, I = 1536; MLP-t: M = B * 512, I = 512.
Floor per call (bf16): forward reads 2I and writes I elements per row, 6I bytes; backward reads dh and
gate_up and writes dgate_up, 10I bytes per row (12I with h); 5 (forward) and ~10 (backward) FLOP per element
of h.
At M = 768 * 97, I = 1536: forward 687 MB, backward 1.14 GB, i.e. ~0.23 ms and ~0.38 ms at 3.0 TB/s.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _swiglu_fwd_kernel(gate_up_ptr, stride_gu_m, h_ptr, stride_h_m, I, BLOCK: tl.constexpr):
    # one program: one row, BLOCK columns of h
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    g = tl.load(gate_up_ptr + row * stride_gu_m + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gate_up_ptr + row * stride_gu_m + I + cols, mask=mask, other=0.0).to(tl.float32)
    h = g * tl.sigmoid(g) * u
    tl.store(h_ptr + row * stride_h_m + cols, h.to(h_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(dh_ptr, stride_dh_m, gate_up_ptr, stride_gu_m, dgu_ptr, stride_dgu_m, h_ptr, stride_h_m, I,
                       WRITE_H: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < I
    dh = tl.load(dh_ptr + row * stride_dh_m + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(gate_up_ptr + row * stride_gu_m + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gate_up_ptr + row * stride_gu_m + I + cols, mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(g)
    dg = dh * u * s * (1.0 + g * (1.0 - s))
    du = dh * g * s
    out_ty = dgu_ptr.dtype.element_ty
    tl.store(dgu_ptr + row * stride_dgu_m + cols, dg.to(out_ty), mask=mask)
    tl.store(dgu_ptr + row * stride_dgu_m + I + cols, du.to(out_ty), mask=mask)
    if WRITE_H:  # the forward's expression, so the forward's bits
        h = g * s * u
        tl.store(h_ptr + row * stride_h_m + cols, h.to(h_ptr.dtype.element_ty), mask=mask)


def _block(inner: int) -> int:
    # A power of two covering the row when it is short (I = 512, 1536 -> 512, 1024): few programs,
    # full 16-byte accesses; capped so that registers stay low.
    return min(1024, triton.next_power_of_2(inner))


def swiglu_fwd(gate_up: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """h (M, I) from gate_up (M, 2I); `out`, if given, must be a contiguous (M, I) tensor."""
    m, two_i = gate_up.shape
    inner = two_i // 2
    if out is None:
        out = torch.empty((m, inner), dtype=gate_up.dtype, device=gate_up.device)
    block = _block(inner)
    grid = (m, triton.cdiv(inner, block))
    _swiglu_fwd_kernel[grid](gate_up, gate_up.stride(0), out, out.stride(0), inner, BLOCK=block)
    return out


def swiglu_bwd(dh: torch.Tensor, gate_up: torch.Tensor, out: torch.Tensor | None = None,
               h_out: torch.Tensor | None = None) -> torch.Tensor:
    """dgate_up (M, 2I) from dh (M, I) and the forward's input gate_up (M, 2I); with `h_out`, a contiguous
    (M, I) tensor, the forward's h is written there too."""
    m, two_i = gate_up.shape
    inner = two_i // 2
    if out is None:
        out = torch.empty((m, two_i), dtype=gate_up.dtype, device=gate_up.device)
    block = _block(inner)
    grid = (m, triton.cdiv(inner, block))
    h_arg = out if h_out is None else h_out  # never written without WRITE_H
    _swiglu_bwd_kernel[grid](dh, dh.stride(0), gate_up, gate_up.stride(0), out, out.stride(0), h_arg, h_arg.stride(0),
                             inner, WRITE_H=h_out is not None, BLOCK=block)
    return out
