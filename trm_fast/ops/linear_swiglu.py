"""The MLP's first half: the gate/up projection and SwiGLU, h = silu(x W_gate^T) * (x W_up^T).

Shapes: x (..., R, K) with any strides on its last two axes (MLP-t's transposed view too), weight (2N, K)
(the gate_up projection's, gate rows first) -> h (..., R, N) contiguous.
FLOPs per call: 4 M N K for M rows of x. The fused path (trm_fast.kernels.linear_swiglu) applies SwiGLU to
the GEMM's tiles before they leave the chip, so the (M, 2N) gate_up activation is never written nor read
back: per sudoku_attn layer at batch 768 that is 915 MB less traffic and one kernel fewer.

On Hopper a second fused path (op ``linear_swiglu_sm90``) runs CUTLASS's warp-specialised GEMM (csrc/sm90): one
ping-pong GEMM over the weight's gate and up rows permuted in groups (`grouped_pairs`), whose epilogue turns each
thread's gate/up accumulator pairs into h and stores 8 of them as one 16-byte vector. On an H100 at sudoku_attn's
batch 768 it takes 401.0 us with the weight's gather, near CUTLASS's plain GEMM of the same shape (377.9 us),
against 581.3 us for cuBLAS's GEMM and inductor's SwiGLU (bench/results/2026-12-07_h100_{5924a9a,17d50c6}_*;
bench/NOTES.md, "Gate/up + SwiGLU on CUTLASS's Hopper GEMM"). 'auto' runs it where the extension has it (built
with CUTLASS's headers) and the call fits, else the Triton kernel below.

The fused paths are forward only: while autograd records (grad mode on and x or the weight requiring grad)
the reference runs, with its own SwiGLU op (trm_fast.ops.swiglu) on the backend asked for.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import _native
from .. import backend as _backend
from .swiglu import swiglu

def linear_swiglu_reference(x: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """The model's unfused path: the projection (M, 2N) in x's dtype, then SwiGLU on it."""
    return swiglu(F.linear(x, weight), backend=backend)


@torch.library.custom_op("trm_fast::linear_swiglu", mutates_args=())
def linear_swiglu_fused(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The Triton kernel, on x as (B, R, K) with any strides; forward only."""
    from ..kernels.linear_swiglu import linear_swiglu as kernel

    shape = (*x.shape[:-1], weight.shape[0] // 2)
    while x.ndim < 3:
        x = x.unsqueeze(0)
    if x.ndim > 3:  # leading axes that flatten to one stride (unsupported() checks): a view
        x = x.reshape(-1, *x.shape[-2:])
    return kernel(x, weight).view(shape)


@linear_swiglu_fused.register_fake
def _(x, weight):
    return x.new_empty((*x.shape[:-1], weight.shape[0] // 2))


@torch.library.custom_op("trm_fast::linear_swiglu_sm90", mutates_args=())
def linear_swiglu_sm90(x: torch.Tensor, weight: torch.Tensor, x_partials: Optional[torch.Tensor] = None,
                       eps: float = 0.0) -> torch.Tensor:
    """CUTLASS's GEMM with SwiGLU in its epilogue (csrc/sm90/gemm_swiglu.h) on bf16 x whose rows flatten to one
    stride with unit stride along K (unsupported_sm90 checks); forward only. With `x_partials`, x is the carried
    RMSNorm's un-normalised y (trm_fast.ops.carried_norm, which checks them) and SwiGLU runs on rms_norm(x)'s
    projection."""
    n, k = weight.shape[0] // 2, weight.shape[1]
    rows = x.view(-1, k)
    out = rows.new_empty(rows.shape[0], n)
    launch_sm90(rows, weight, out, x_partials, eps)
    return out.view(*x.shape[:-1], n)


def launch_sm90(rows: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, x_partials: Optional[torch.Tensor] = None,
                eps: float = 0.0):
    """out (M, N) = silu(rows W_gate^T) * (rows W_up^T) through the CUTLASS kernel, on the weight's rows gathered
    in groups here (`grouped_pairs`). Inputs as unsupported_sm90 takes. With `x_partials`, rows are the carried
    RMSNorm's un-normalised y and their scale is applied first (trm_fast.ops.carried_norm, which checks them)."""
    n, k = weight.shape[0] // 2, weight.shape[1]
    m = rows.shape[0]
    ext = _native.extension()
    w = grouped_pairs(weight)
    workspace = rows.new_empty(ext.gemm_swiglu_sm90_workspace(m, n, k), dtype=torch.uint8)
    ext.gemm_swiglu_sm90(rows.data_ptr(), rows.stride(0), w.data_ptr(), w.stride(0), out.data_ptr(), out.stride(0),
                         0 if x_partials is None else x_partials.data_ptr(), float(eps), m, n, k,
                         workspace.data_ptr(), rows.device.index, _native.stream(rows))


@linear_swiglu_sm90.register_fake
def _(x, weight, x_partials=None, eps=0.0):
    return x.new_empty((*x.shape[:-1], weight.shape[0] // 2))


def swiglu_keep_sm90(rows: torch.Tensor, weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """For training: (gate_up (M, 2N), h (M, N)) from rows (M, K) and the (2N, K) weight in one CUTLASS GEMM,
    linear_swiglu_sm90's writing the pre-activations beside h, where the unfused pair writes
    gate_up, reads it back and writes h. h is computed from the rounded gate_up, as SwiGLU's kernel computes it.
    Inputs as unsupported_sm90 takes; no autograd (trm_fast.ops.recomputed_mlp's kept_mlp is the op)."""
    n, k = weight.shape[0] // 2, weight.shape[1]
    m = rows.shape[0]
    ext = _native.extension()
    gate_up, h = rows.new_empty(m, 2 * n), rows.new_empty(m, n)
    w = grouped_pairs(weight)
    workspace = rows.new_empty(ext.gemm_swiglu_keep_sm90_workspace(m, n, k), dtype=torch.uint8)
    ext.gemm_swiglu_keep_sm90(rows.data_ptr(), rows.stride(0), w.data_ptr(), w.stride(0), gate_up.data_ptr(), 2 * n,
                              h.data_ptr(), n, m, n, k, workspace.data_ptr(), rows.device.index, _native.stream(rows))
    return gate_up, h


def grouped_pairs(weight: torch.Tensor) -> torch.Tensor:
    """The (2N, K) gate_up weight (gate rows first) as the grouped-pairs GEMM reads it: 2N rounded up to whole
    64-row groups, row 64 g + 8 i + 2 q gate_j and the next row up_j for j = 32 g + 8 q + i (q < 4, i < 8), zero
    rows for j >= N. A wgmma fragment gives lane q of each quad the columns 64 g + 8 i + 2 q and + 1 of its rows,
    so that lane holds h's columns 32 g + 8 q ... + 7 and stores them as one 16-byte vector
    (csrc/sm90/gemm_swiglu.cuh's SwigluGroup). One gather of whole rows (_native.gather_rows)."""
    n = weight.shape[0] // 2
    half = _native.SM90_GROUP_ROWS // 2
    padded = -(-n // half) * half
    if padded != n:
        weight = torch.cat([F.pad(t, (0, 0, 0, padded - n)) for t in (weight[:n], weight[n:])])
    # row 64 g + 8 i + 2 q + e is half e's row 32 g + 8 q + i
    return _native.gather_rows(weight, ("swiglu pairs",), lambda r: (r % 2) * padded + r // 64 * 32
                               + r // 2 % 4 * 8 + r // 8 % 8)


def unsupported_sm90(x: torch.Tensor, weight: torch.Tensor) -> Optional[str]:
    """Why the CUTLASS kernel cannot take this call, or None: a Hopper GPU (compute capability 9.0: sm_90a
    code runs there only), the extension built with it, bf16, the operands every kernel of the op takes, and
    the 16-byte alignment TMA needs (K and N multiples of 8, x's rows and the weight 16-byte aligned)."""
    why = _native.sm90_unsupported(x) or _operands_unsupported(x, weight)
    if why is not None:
        return why
    k, n = weight.shape[1], weight.shape[0] // 2
    if k % 8 or n % 8:
        return f"K ({k}) and N ({n}) must be multiples of 8"
    if x.stride(-1) != 1 or not _backend.leading_axes_flatten(x, trailing=1):
        return f"x's rows must flatten to one stride with unit stride along K (strides {x.stride()})"
    # offsets, not addresses: torch.compile traces this on tensors without storage, and PyTorch's allocations
    # start 16-byte aligned
    row_stride = next((x.stride(i) for i in reversed(range(x.ndim - 1)) if x.shape[i] > 1), k)  # of x.view(-1, k)
    if row_stride % 8 or x.storage_offset() % 8 or weight.storage_offset() % 8 or weight.stride(0) % 8:
        return "x's rows and the weight must be 16-byte aligned"
    return None


def unsupported(x: torch.Tensor, weight: torch.Tensor, backend: str) -> Optional[str]:
    """Why the Triton kernel cannot take this call, or None."""
    return _backend.triton_unsupported(x, "x", backend) or _operands_unsupported(x, weight)


def _operands_unsupported(x: torch.Tensor, weight: torch.Tensor) -> Optional[str]:
    """Why no kernel of this op (Triton's or CUTLASS's) can take these operands, or None: one device and dtype,
    weight (2N, K) with unit stride along K, x non-empty with leading axes that flatten to one stride."""
    if weight.device != x.device:
        return f"weight is on {weight.device}, x on {x.device}"
    if weight.dtype != x.dtype:
        return f"weight ({weight.dtype}) and x ({x.dtype}) must have one dtype"
    if weight.ndim != 2 or weight.shape[0] % 2 or x.ndim == 0 or weight.shape[1] != x.shape[-1]:
        return (f"weight must be (2N, K) with K = x's last axis; got weight {tuple(weight.shape)}, "
                f"x {tuple(x.shape)}")
    if x.numel() == 0:
        return "x is empty"
    if weight.stride(-1) != 1:
        return f"weight needs unit stride on its last axis, got strides {weight.stride()}"
    if not _backend.leading_axes_flatten(x, trailing=2):  # the last two axes may have any strides
        return f"x's leading axes do not flatten to one stride (shape {tuple(x.shape)}, strides {x.stride()})"
    return None


def _not_measured_faster(x: torch.Tensor) -> bool:
    """Where 'auto' keeps the unfused pair on a GPU: fp32 (the kernel's exact fp32 dots were not measured
    against cuBLAS), MLP-t's transposed x (not unit stride along K: only the pointer kernel takes it), or a
    GPU older than Hopper (no TMA). Dtype, strides and the device's properties only: torch.compile traces it."""
    return x.device.type == "cuda" and (x.dtype == torch.float32 or x.stride(-1) != 1
                                        or torch.cuda.get_device_properties(x.device).major < 9)


def linear_swiglu(x: torch.Tensor, weight: torch.Tensor, backend: str = "reference") -> torch.Tensor:
    """``swiglu(F.linear(x, weight))``: x (..., K), weight (2N, K) in x's dtype -> (..., N).

    'auto' runs the persistent TMA kernel (row-major x on Hopper): on an H200, with two programs per SM, it
    took 427 us at sudoku_attn's batch 768 where cuBLAS's GEMM and inductor's SwiGLU take 528 us together,
    1.04 against 1.23 ms at arc_attn's batch 192 (Triton's do_bench medians), and the engine's 16-step
    evaluation took 850 ms with it against 916 ms without (bench/results/2026-11-29_h200_7ef693d_*). The
    pointer kernel, the only one for MLP-t's transposed x, lost (918 against 699 us at sudoku_mlpt's token
    MLP): there, in fp32 and before Hopper 'auto' keeps the unfused pair, and only 'fused' runs a kernel. The
    kernels are forward only: while autograd records, the reference runs."""
    recording = _backend.records(x, weight)
    if not recording and _backend.offers(backend, "linear_swiglu_sm90", lambda: unsupported_sm90(x, weight)):
        return linear_swiglu_sm90(x, weight)
    why_not = lambda: unsupported(x, weight, backend)  # noqa: E731
    slower = backend == "auto" and _not_measured_faster(x)
    if not recording and not slower and _backend.use_fused(backend, "linear_swiglu", why_not):
        return linear_swiglu_fused(x, weight)
    return linear_swiglu_reference(x, weight, backend)
