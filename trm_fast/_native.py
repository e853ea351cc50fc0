"""The thin Python face of the CUDA extension ``trm_fast._C``.

The extension links no libtorch: its launchers take device pointers, sizes, element strides, the
device index and the current CUDA stream as plain integers. These helpers turn a tensor into those
arguments. A tensor of 1 to 3 dimensions is seen as (batch, rows, n), missing leading dimensions
having size 1 and stride 0. Nothing here checks inputs: each op in ``trm_fast.ops`` does that once,
before it launches.

``trm_fast._C`` is imported on first use only, so ``import trm_fast`` works without it;
``trm_fast.backend.native_status()`` says why it is missing.
"""

from typing import Callable, Dict, Optional, Tuple

import torch

from . import backend

# Rows of a weight that the grouped CUTLASS shapes permute together (csrc/sm90/gemm_sm90.cuh's kGroupColumns: eight
# 8-column blocks of a wgmma accumulator fragment): trm_fast.ops.linear_swiglu.grouped_pairs and
# trm_fast.ops.linear_rope.grouped_rows
SM90_GROUP_ROWS = 64

_ROW_ORDERS: Dict[tuple, torch.Tensor] = {}


def gather_rows(weight: torch.Tensor, key: tuple, order: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """weight's rows in the order `order(torch.arange(rows))` gives, as one index_select: how the CUTLASS ops lay
    out their weight on every call (a copy cached across calls would go stale inside a CUDA graph replayed after
    the weight changed). A permuted 5-D view's copy ran PyTorch's generic copy kernel with 2-byte stores, ~28 us
    a call on an H100; the gather moves whole rows as 8-byte words, ~4 us (bench/results/2026-12-07_h100_{5924a9a,
    17d50c6}_gemm_tiles_*.jsonl).
    The order is computed once per `key`, rows and device, except while a CUDA graph is being captured (its
    values would exist only once the graph replays)."""
    rows = weight.shape[0]
    full_key = (key, rows, weight.device)
    index = _ROW_ORDERS.get(full_key)
    if index is None:
        index = order(torch.arange(rows, device=weight.device))
        if weight.device.type != "cuda" or not torch.cuda.is_current_stream_capturing():
            _ROW_ORDERS[full_key] = index
    source = weight.contiguous()
    size = source.element_size()
    if source.shape[1] * size % 8 == 0 and source.storage_offset() * size % 8 == 0:
        source = source.view(torch.int64)
    return source.index_select(0, index).view(weight.dtype)


@torch.compiler.assume_constant_result
def status() -> Optional[str]:
    """``backend.native_status()``, which torch.compile takes as a constant instead of tracing the import
    attempt behind it on every compile."""
    return backend.native_status()


@torch.compiler.assume_constant_result
def sm90_status() -> Optional[str]:
    """``backend.sm90_status()``, a constant to torch.compile as status() is."""
    return backend.sm90_status()


def sm90_unsupported(x: torch.Tensor) -> Optional[str]:
    """Why no CUTLASS kernel of csrc/sm90 can run on x, or None: what they all need before their own operand
    checks. x on a CUDA device, the extension built with them, a Hopper GPU (compute capability 9.0: sm_90a
    code runs there only), bf16."""
    if x.device.type != "cuda":
        return f"x is on {x.device}, the kernel needs a CUDA device"
    why = sm90_status()
    if why is not None:
        return why
    if torch.cuda.get_device_capability(x.device) != (9, 0):
        return f"{x.device} is not a Hopper GPU (compute capability 9.0)"
    if x.dtype != torch.bfloat16:
        return f"x must be bfloat16, got {x.dtype}"
    return None


def extension():
    """The module ``trm_fast._C``; FusedUnavailableError saying why where it cannot be loaded."""
    reason = status()
    if reason is not None:
        raise backend.FusedUnavailableError(reason)
    from . import _C

    return _C


def dtype(t: torch.Tensor):
    """The extension's code for t's element type (bfloat16 or float32)."""
    codes = extension().DType
    return codes.bfloat16 if t.dtype == torch.bfloat16 else codes.float32


def sizes3(t: torch.Tensor) -> Tuple[int, int, int]:
    """(batch, rows, n) of a 1-D to 3-D tensor."""
    return (1,) * (3 - t.dim()) + tuple(t.shape)


def strides3(t: torch.Tensor) -> Tuple[int, int, int]:
    """Element strides of t seen as (batch, rows, n)."""
    return (0,) * (3 - t.dim()) + tuple(t.stride())


def stream(t: torch.Tensor) -> int:
    """The current CUDA stream of t's device (the capturing one inside torch.cuda.graph)."""
    return torch.cuda.current_stream(t.device).cuda_stream


def gemm_plain_sm90(config: int, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out (m, n) = x (m, k) w (n, k)^T through CUTLASS's plain GEMM in shape `config` (csrc/sm90/gemm_plain.h, its
    own TMA-store epilogue, nothing fused), bf16 with unit stride along each row; returns out. Not an op: the
    measuring stick that the fused epilogues' mainloops are timed and checked against (bench/gemm_tiles.py,
    bench/test_kernels.py, bench/sanitize_sm90.py, tests/kernels/test_gemm_plain_sm90.py)."""
    ext = extension()
    (m, k), n = x.shape, w.shape[0]
    workspace = torch.empty(ext.gemm_plain_sm90_workspace(config, m, n, k), dtype=torch.uint8, device=x.device)
    ext.gemm_plain_sm90(config, x.data_ptr(), x.stride(0), w.data_ptr(), w.stride(0), out.data_ptr(), out.stride(0),
                        m, n, k, workspace.data_ptr(), x.device.index, stream(x))
    return out
