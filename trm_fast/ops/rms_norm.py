"""Residual add + RMSNorm, post-norm, no weight: y = rms_norm(x + delta).

    s = x + delta                        (reference: in the activation dtype, as the official model adds;
                                          fused kernel: in fp32, which is closer to exact)
    rstd = 1 / sqrt(mean(s**2) + eps)    (fp32, over the last axis of width N)
    y = s * rstd                         (cast back to the activation dtype)

Backward. With r = rstd, dr/ds_j = -r**3 s_j / N, so for a loss L with dy = dL/dy:
    ds_j = r dy_j + sum_i dy_i s_i dr/ds_j = r (dy_j - s_j r**2 mean(dy s)) = r (dy_j - y_j mean(dy y))
since y = s r. The fused backward reads only (dy, y, rstd); dx = ddelta = ds.

Shapes: x, delta (..., N); the norm runs over the last axis. TRM calls it with N = hidden (512) after
attention and the MLP, and with N = seq_len + puzzle_emb_len (97 for Sudoku) on the transposed view
after MLP-t's token mixing (x = h.transpose(1, 2), whose N axis has stride D and rows axis stride 1).

The fused path (``trm_fast::add_rms_norm``, CUDA, csrc/add_rms_norm.cu) takes bfloat16 or float32
tensors of 1 to 3 dimensions in one of two layouts:
- rows: the N axis has stride 1 in x and delta and N is a multiple of the 16-byte vector (8 bf16,
  4 fp32) up to 512: one warp per row, 16-byte loads;
- columns: the rows axis (the one before N) has stride 1 in x, as in MLP-t: one thread per row,
  a warp reading 32 neighbouring rows at each step of N.
y is allocated with x's layout (so MLP-t's output, transposed back, is a contiguous (B, S, D)), and rstd
(fp32, one per row) is kept for the backward. Other layouts, dtypes and devices use the reference.

Floor per call at TRM's shape (E = 768 * 97 * 512 = 38.1 M elements in 74,496 rows, bf16):
- forward, fused: read x and delta, write y (6 B/element) and rstd (4 B/row): 229 MB, 4 FLOP/element
  (153 MFLOP): memory-bound, about 76 us at the H100's ~3.0 TB/s. The eager reference (add, to fp32,
  pow, mean, rsqrt, mul, to bf16) moves 38 B/element: 1.45 GB.
- backward, fused: read dy and y (6 B/element with the write of ds) and rstd: 229 MB, 5 FLOP/element
  (191 MFLOP), about 76 us. Autograd through the reference moves about 80 B/element: 3.05 GB.
(Reference counts: every aten op's input and output bytes, under a TorchDispatchMode.)
Measured on an H100 (triton.testing.do_bench, bf16): rows (768, 97, 512) forward 82 us and backward 82 us
(2.8 TB/s), eager reference 579 us and ~1160 us; MLP-t's columns (768, 512, 97) forward 234 us and backward
189 us (its contiguous delta is read across rows, so 1.0-1.2 TB/s), reference 783 us and ~1410 us.
"""

from typing import Optional, Tuple

import torch

from .. import _native
from .. import backend as backends

_DTYPES = (torch.bfloat16, torch.float32)
_ROWS_MAX_N = 512  # the widest row the rows kernel holds in registers: kRowsMaxN in csrc/add_rms_norm.h


def rms_norm_reference(hidden: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without weight over the last axis; fp32 math, result in the input dtype."""
    s = hidden.to(torch.float32)
    s = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + eps)
    return s.to(hidden.dtype)


def add_rms_norm_reference(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """rms_norm(x + delta); the add rounds to the activation dtype first, as the official model does."""
    return rms_norm_reference(x + delta, eps)


def _vector(t: torch.Tensor) -> int:
    """Elements in one 16-byte load."""
    return 16 // t.element_size()


def _rows_layout(x: torch.Tensor, delta: torch.Tensor) -> bool:
    n = x.shape[-1]
    return x.stride(-1) == 1 and delta.stride(-1) == 1 and n % _vector(x) == 0 and n <= _ROWS_MAX_N


def _columns_layout(x: torch.Tensor) -> bool:
    return x.dim() >= 2 and x.shape[-2] > 1 and x.stride(-2) == 1


def _unsupported(x: torch.Tensor, delta: torch.Tensor) -> Optional[str]:
    """Why the fused kernel cannot take add_rms_norm(x, delta), or None when it can."""
    if x.dtype not in _DTYPES:
        return f"x is {x.dtype}; the fused kernel takes bfloat16 and float32"
    if delta.dtype != x.dtype or delta.shape != x.shape:
        return f"x ({x.dtype}, {tuple(x.shape)}) and delta ({delta.dtype}, {tuple(delta.shape)}) differ"
    if not 1 <= x.dim() <= 3:
        return f"x is {x.dim()}-D; the fused kernel takes 1-D to 3-D tensors"
    if x.numel() == 0:
        return "x is empty"
    if not (_rows_layout(x, delta) or _columns_layout(x)):
        return (f"layout of x (strides {x.stride()}) and delta (strides {delta.stride()}) for shape {tuple(x.shape)}: "
                f"the fused kernel needs the last axis at stride 1 in both and its width a multiple of "
                f"{_vector(x)} up to {_ROWS_MAX_N}, or the axis before it at stride 1 in x (a transposed view)")
    if x.device.type != "cuda" or delta.device != x.device:
        return f"x is on {x.device} and delta on {delta.device}; the fused kernel needs both on one CUDA device"
    return _native.status()


def _unsupported_backward(dy: torch.Tensor, y: torch.Tensor, rstd: torch.Tensor) -> Optional[str]:
    """Why the fused backward cannot take (dy, y, rstd), or None when it can."""
    if y.dtype not in _DTYPES or dy.dtype != y.dtype or dy.shape != y.shape:
        return (f"dy ({dy.dtype}, {tuple(dy.shape)}) and y ({y.dtype}, {tuple(y.shape)}) must have one shape and "
                "one dtype, bfloat16 or float32")
    if not 1 <= y.dim() <= 3:
        return f"y is {y.dim()}-D; the fused kernel takes 1-D to 3-D tensors"
    if rstd.dtype != torch.float32 or rstd.shape != y.shape[:-1] or not rstd.is_contiguous():
        return (f"rstd ({rstd.dtype}, {tuple(rstd.shape)}) must be contiguous float32 of shape "
                f"{tuple(y.shape[:-1])}")
    if y.device.type != "cuda" or dy.device != y.device or rstd.device != y.device:
        return f"dy, y and rstd are on {dy.device}, {y.device}, {rstd.device}; they must share one CUDA device"
    return _native.status()


def _rows_ready(*tensors: torch.Tensor) -> bool:
    """Whether the rows kernel can take these same-shaped tensors: N axis at stride 1, N a multiple of
    the vector up to the register tile, pointers and row strides 16-byte aligned. (Real tensors only:
    alignment is unknown while torch.compile traces, so it is decided here, at launch.)"""
    n, vec = tensors[0].shape[-1], _vector(tensors[0])
    return n % vec == 0 and n <= _ROWS_MAX_N and all(
        t.stride(-1) == 1 and t.data_ptr() % 16 == 0 and all(s % vec == 0 for s in _native.strides3(t)[:2])
        for t in tensors)


def _launch_forward(x: torch.Tensor, delta: torch.Tensor, y: torch.Tensor, rstd: torch.Tensor, eps: float):
    """Write y and rstd (contiguous, x.shape[:-1]) for inputs that `_unsupported` accepted."""
    ext = _native.extension()
    kernel = ext.add_rms_norm_rows_fwd if _rows_ready(x, delta, y) else ext.add_rms_norm_strided_fwd
    kernel(_native.dtype(x), x.data_ptr(), _native.strides3(x), delta.data_ptr(), _native.strides3(delta),
           y.data_ptr(), _native.strides3(y), rstd.data_ptr(), *_native.sizes3(x), eps, x.device.index,
           _native.stream(x))


def _launch_backward(dy: torch.Tensor, y: torch.Tensor, rstd: torch.Tensor, ds: torch.Tensor):
    """Write ds for inputs that `_unsupported_backward` accepted."""
    ext = _native.extension()
    kernel = ext.add_rms_norm_rows_bwd if _rows_ready(dy, y, ds) else ext.add_rms_norm_strided_bwd
    kernel(_native.dtype(y), dy.data_ptr(), _native.strides3(dy), y.data_ptr(), _native.strides3(y),
           rstd.data_ptr(), ds.data_ptr(), _native.strides3(ds), *_native.sizes3(y), y.device.index,
           _native.stream(y))


@torch.library.custom_op("trm_fast::add_rms_norm", mutates_args=())
def add_rms_norm_fused(x: torch.Tensor, delta: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, rstd): y = rms_norm(x + delta) with x's layout, rstd (fp32, x.shape[:-1]) for the backward."""
    reason = _unsupported(x, delta)
    if reason is not None:
        raise backends.FusedUnavailableError(f"trm_fast::add_rms_norm cannot take these inputs: {reason}")
    y = torch.empty_like(x)
    rstd = torch.empty(x.shape[:-1], dtype=torch.float32, device=x.device)
    _launch_forward(x, delta, y, rstd, eps)
    return y, rstd


@add_rms_norm_fused.register_fake
def _(x, delta, eps):
    return torch.empty_like(x), x.new_empty(x.shape[:-1], dtype=torch.float32)


@torch.library.custom_op("trm_fast::add_rms_norm_backward", mutates_args=())
def add_rms_norm_backward(dy: torch.Tensor, y: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """ds = rstd * (dy - y * mean(dy * y)) over the last axis, with y's layout (= dx = ddelta)."""
    reason = _unsupported_backward(dy, y, rstd)
    if reason is not None:
        raise backends.FusedUnavailableError(f"trm_fast::add_rms_norm_backward cannot take these inputs: {reason}")
    ds = torch.empty_like(y)
    _launch_backward(dy, y, rstd, ds)
    return ds


@add_rms_norm_backward.register_fake
def _(dy, y, rstd):
    return torch.empty_like(y)


def _setup_context(ctx, inputs, output):
    y, rstd = output
    ctx.mark_non_differentiable(rstd)
    ctx.save_for_backward(y, rstd)


def _backward(ctx, dy, _drstd):
    y, rstd = ctx.saved_tensors
    ds = add_rms_norm_backward(dy, y, rstd)
    return ds, ds, None  # x and delta enter as a sum: both get ds, as autograd's own add does


add_rms_norm_fused.register_autograd(_backward, setup_context=_setup_context)


def _check(x: torch.Tensor, delta: torch.Tensor, eps: float):
    if not isinstance(x, torch.Tensor) or not isinstance(delta, torch.Tensor):
        raise TypeError(f"add_rms_norm: x and delta must be tensors, got {type(x).__name__} and "
                        f"{type(delta).__name__}")
    if x.shape != delta.shape:
        raise ValueError(f"add_rms_norm: x and delta must have one shape, got {tuple(x.shape)} and "
                         f"{tuple(delta.shape)}")
    if x.dtype != delta.dtype:
        raise TypeError(f"add_rms_norm: x and delta must have one dtype, got {x.dtype} and {delta.dtype}")
    if x.device != delta.device:
        raise ValueError(f"add_rms_norm: x and delta must be on one device, got {x.device} and {delta.device}")
    if not eps > 0:
        raise ValueError(f"add_rms_norm: eps must be > 0, got {eps!r}")


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor, eps: float, backend: str = "reference") -> torch.Tensor:
    """Post-norm residual: ``rms_norm(x + delta)`` over the last axis (x and delta of one shape, dtype and
    device; eps > 0). ``backend`` is "reference", "fused" or "auto" (see trm_fast.backend)."""
    _check(x, delta, eps)
    if backends.leave_to_inductor(backend, x, delta):
        return add_rms_norm_reference(x, delta, eps)
    if backends.use_fused(backend, "add_rms_norm", lambda: _unsupported(x, delta)):
        return add_rms_norm_fused(x, delta, eps)[0]
    return add_rms_norm_reference(x, delta, eps)
