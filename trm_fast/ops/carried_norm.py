"""The post-norm block's RMSNorm carried as a statistic: a projection with the residual add in its epilogue that
writes the un-normalised sum y and one partial sum of squares per 64 columns, for the next GEMM to apply the
row's scale in its own epilogue.

The official block computes h1 = rms_norm(h + o(h)) and h2 = rms_norm(h1 + down(h1)); rms_norm(y) = s y with
s = rsqrt(mean(y^2) + eps), one number per row, and a row's scale passes through a GEMM:
(diag(s) Y) W^T = diag(s) (Y W^T). So the normalised rows need never be written: each residual projection
stores y and its partials (this module's kernel, csrc/sm90/gemm_residual.h), and whatever reads y next scales
it by s (the next residual add here; the QKV + RoPE and gate/up + SwiGLU GEMMs' epilogues next). That removes the
two add + RMSNorm passes of a layer, ~110 us a sudoku_attn layer at batch 768 at their byte floors
(bench/NOTES.md, "The carried statistic").

What is here: the kernel (Hopper, CUTLASS: `launch_sm90`, op `linear_residual_sm90`) with its reference and
checks; the partials' check for the GEMMs that apply s in their epilogue (the ops linear_swiglu_sm90 and
linear_rope_sm90 take `x_partials`); `normalize`, for the chain's last output; and what the model asks before it
carries (y, partials) from layer to layer (`offered`, `layer_unsupported`; trm_fast.models.layers runs the chain,
outside autograd, where AUTO_OPS names `carried_norm`).

Shapes: x (M, K), weight (N, K), the residual r and y (M, N), partials (M, N / 64) fp32, 16-byte aligned; N a
multiple of 64 and at most 1,024 (the readers' producer warp stages a tile's partials in a buffer of that size).
"""

from typing import Iterable, Optional, Tuple

import torch

from .. import _native
from .. import backend as _backend
from .linear_rope import grouped_rows

GROUP = _native.SM90_GROUP_ROWS
MAX_COLUMNS = 1024  # csrc/sm90/gemm_sm90.cuh's kCarriedMaxColumns


def carried_scale_reference(partials: torch.Tensor, n: int, eps: float) -> torch.Tensor:
    """The row scale s = rsqrt(mean(y^2) + eps) of rows n wide from their partial sums of squares (M, n / 64),
    summed in their order as the kernels sum them; fp32 (M,)."""
    return torch.rsqrt(partials.float().sum(-1) / n + eps)


def partials_reference(y: torch.Tensor) -> torch.Tensor:
    """The carried statistic of rows y (M, N): the sum of their squares over columns 64 g ... 64 g + 63, fp32 (M,
    N / 64); computed in fp64 where y is fp64."""
    compute = torch.float64 if y.dtype == torch.float64 else torch.float32
    return y.to(compute).square().view(y.shape[0], -1, GROUP).sum(-1).to(torch.float32)


def linear_residual_reference(x: torch.Tensor, weight: torch.Tensor, r: torch.Tensor,
                              r_partials: Optional[torch.Tensor], eps: float):
    """(y, partials): y = x weight^T + s_r r in fp32 (s_r from r's partials, 1 without them), rounded to x's
    dtype, and partials[:, g] the sum of y's squares over columns 64 g ... 64 g + 63, of y as rounded. Computed in
    x's dtype where it is fp64 (the tests' truth), else in fp32."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    n = weight.shape[0]
    y = x.to(compute) @ weight.to(compute).t()
    scale = 1.0 if r_partials is None else carried_scale_reference(r_partials, n, eps).to(compute)[:, None]
    y = (y + scale * r.to(compute)).to(x.dtype)
    return y, partials_reference(y)


def partials_unsupported(rows: torch.Tensor, partials: torch.Tensor, name: str = "partials") -> Optional[str]:
    """Why `partials` are not the carried statistic of (M, N) rows as the kernels read and write it, or None:
    (M, N / 64) fp32 contiguous and 16-byte aligned on the rows' device, N a multiple of 64 up to 1,024."""
    m, n = rows.shape
    if n % GROUP or n > MAX_COLUMNS:
        return f"the rows' width ({n}) must be a multiple of {GROUP} up to {MAX_COLUMNS}"
    if (partials.dtype != torch.float32 or tuple(partials.shape) != (m, n // GROUP) or not partials.is_contiguous()
            or partials.device != rows.device):
        return (f"{name} must be contiguous float32 {(m, n // GROUP)} on {rows.device}, got {partials.dtype} "
                f"{tuple(partials.shape)} on {partials.device}")
    if partials.data_ptr() % 16:  # the readers copy a tile's partials 16 bytes at a time (gemm_sm90.cuh's RowScales)
        return f"{name} must start 16-byte aligned (its address is {partials.data_ptr():#x})"
    return None


def unsupported_sm90(x: torch.Tensor, weight: torch.Tensor, r: torch.Tensor, r_partials: Optional[torch.Tensor],
                     y: torch.Tensor, partials: torch.Tensor) -> Optional[str]:
    """Why the kernel cannot take these (M, K) rows, or None: a Hopper GPU and the extension built with CUTLASS,
    bf16, weight (N, K) with N a multiple of 64 up to 1,024, r and y (M, N) with unit column stride and 16-byte
    aligned rows, partials and r's partials (M, N / 64) fp32 contiguous, partials not r's partials."""
    why = _native.sm90_unsupported(x)
    if why is not None:
        return why
    if x.ndim != 2 or x.numel() == 0:
        return f"x must be non-empty (M, K) rows, got shape {tuple(x.shape)}"
    m, k = x.shape
    if weight.ndim != 2 or weight.shape[1] != k:
        return f"weight must be (N, K) with K = {k}, got {tuple(weight.shape)}"
    n = weight.shape[0]
    if n % GROUP or n > MAX_COLUMNS:
        return f"N ({n}) must be a multiple of {GROUP} up to {MAX_COLUMNS}"
    for name, t in (("weight", weight), ("r", r), ("y", y)):
        shape = (n, k) if name == "weight" else (m, n)
        if t.device != x.device or t.dtype != x.dtype or tuple(t.shape) != shape:
            return f"{name} must be {x.dtype} {shape} on {x.device}, got {t.dtype} {tuple(t.shape)} on {t.device}"
    if k % 8:  # before the rows' alignment, which it implies for contiguous x
        return f"K ({k}) must be a multiple of 8"
    for name, t in (("x", x), ("r", r), ("y", y)):
        if t.stride(1) != 1 or t.stride(0) % 8 or t.storage_offset() % 8:
            return f"{name}'s rows must be 16-byte aligned with unit column stride (strides {t.stride()})"
    why = partials_unsupported(y, partials) or (r_partials is not None and
                                                partials_unsupported(r, r_partials, "r_partials")) or None
    if why is not None:
        return why
    if r_partials is not None and r_partials.data_ptr() == partials.data_ptr():
        return "partials must not be r's partials: the other tiles of a row still read them"
    return None


def grouped_weight(weight: torch.Tensor) -> torch.Tensor:
    """The (N, K) weight as the kernel reads it: rows permuted in 64-row groups as RoPE's grouped shape permutes
    them (trm_fast.ops.linear_rope.grouped_rows), so that each thread holds 16 adjacent columns of y; one gather
    (_native.gather_rows)."""
    return _native.gather_rows(weight, ("residual",), lambda r: grouped_rows(r.unsqueeze(1)).squeeze(1))


def launch_sm90(x: torch.Tensor, weight: torch.Tensor, r: torch.Tensor, r_partials: Optional[torch.Tensor],
                y: torch.Tensor, partials: torch.Tensor, eps: float):
    """y = x weight^T + s_r r and y's partials, written in place (y may be r itself). Inputs as unsupported_sm90
    takes them; the weight in its own order (it is gathered here)."""
    (m, k), n = x.shape, weight.shape[0]
    ext = _native.extension()
    w = grouped_weight(weight)
    workspace = x.new_empty(ext.gemm_residual_sm90_workspace(m, n, k), dtype=torch.uint8)
    ext.gemm_residual_sm90(x.data_ptr(), x.stride(0), w.data_ptr(), w.stride(0), r.data_ptr(), r.stride(0),
                           0 if r_partials is None else r_partials.data_ptr(), y.data_ptr(), y.stride(0),
                           partials.data_ptr(), float(eps), m, n, k, workspace.data_ptr(), x.device.index,
                           _native.stream(x))


def normalize(y: torch.Tensor, partials: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """rms_norm(y) from y's partials (the chain's last output becoming a latent): s y in fp32, rounded to y's dtype;
    y itself without partials. Plain PyTorch: under torch.compile inductor makes it one pass, with whatever
    elementwise work follows (the engine's next input injection)."""
    if partials is None:
        return y
    scale = carried_scale_reference(partials, y.shape[-1], eps).view(*y.shape[:-1], 1)
    return (y.float() * scale).to(y.dtype)


@torch.library.custom_op("trm_fast::linear_residual_sm90", mutates_args=())
def linear_residual_sm90(x: torch.Tensor, weight: torch.Tensor, r: torch.Tensor, r_partials: Optional[torch.Tensor],
                         eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, partials) for x (..., K) and r (..., N) whose rows flatten to (M, K) and (M, N) views: the kernel
    (`launch_sm90`) into new tensors, y shaped as r, partials (M, N / 64); forward only. `layer_unsupported`
    checks the inputs."""
    k, n = x.shape[-1], r.shape[-1]
    rows, r_rows = x.reshape(-1, k), r.reshape(-1, n)
    y = torch.empty_like(r_rows)
    partials = r_rows.new_empty((r_rows.shape[0], n // GROUP), dtype=torch.float32)
    launch_sm90(rows, weight, r_rows, r_partials, y, partials, eps)
    return y.view(r.shape), partials


@linear_residual_sm90.register_fake
def _(x, weight, r, r_partials, eps):
    m = r.numel() // r.shape[-1]
    return torch.empty_like(r), r.new_empty((m, r.shape[-1] // GROUP), dtype=torch.float32)


def offered(backend: str, h: torch.Tensor, parameters: Iterable[torch.Tensor]) -> bool:
    """Whether the carried chain may run the post-norm layers that start from h with these parameters: where
    AUTO_OPS names `carried_norm`, on a Hopper GPU, and where autograd does not record (forward only; the training
    backward wants the normalised halves). The parameters are read last: by default the answer is no before."""
    return _backend.offers(backend, "carried_norm", lambda: _native.sm90_unsupported(h)) and \
        not _backend.records(h, *parameters)


def layer_unsupported(h: torch.Tensor, qkv_weight: torch.Tensor, o_weight: torch.Tensor,
                      gate_up_weight: torch.Tensor, down_weight: torch.Tensor, cos_sin, num_heads: int
                      ) -> Optional[str]:
    """Why the chain cannot run an attention layer on h (B, S, D), or None: RoPE's tables, the QKV + RoPE and
    gate/up + SwiGLU kernels' own conditions, D a multiple of 64 up to 1,024, contiguous h, and the residual
    projections' K (H D and the MLP's inner width) multiples of 8."""
    from .linear_rope import unsupported_sm90 as rope_unsupported
    from .linear_swiglu import unsupported_sm90 as swiglu_unsupported

    if cos_sin is None:
        return "the chain's QKV kernel applies RoPE: the model has no RoPE tables"
    if h.ndim != 3 or not h.is_contiguous():
        return f"h must be a contiguous (B, S, D) tensor, got shape {tuple(h.shape)} strides {h.stride()}"
    why = rope_unsupported(h, qkv_weight, *cos_sin, num_heads) or swiglu_unsupported(h, gate_up_weight)
    if why is not None:
        return why
    d = h.shape[-1]
    for name, w in (("o_weight", o_weight), ("down_weight", down_weight)):
        if w.ndim != 2 or w.shape[0] != d or w.shape[1] % 8 or w.dtype != h.dtype or w.device != h.device:
            return f"{name} must be {h.dtype} (D = {d}, K) with K a multiple of 8, got {w.dtype} {tuple(w.shape)}"
    if d % GROUP or d > MAX_COLUMNS:
        return f"D ({d}) must be a multiple of {GROUP} up to {MAX_COLUMNS}"
    return None
