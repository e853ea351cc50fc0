"""The backend switch: which implementation of each op the model runs.

- ``reference``: plain PyTorch, on any device (bit-identical to the official model).
- ``fused``: trm_fast's kernels; an error naming the reason where one cannot run.
- ``auto`` (default): the kernels measured faster than what they replace (`AUTO_OPS`), where the device,
  dtype and shape are supported, otherwise the reference with one warning per op and reason; except the
  elementwise ops in a compiled forward that autograd does not record, which it leaves to torch.compile
  (`leave_to_inductor`).

Chosen, in this order, by the config key ``backend``, the environment variable ``TRM_FAST_BACKEND``,
then ``auto``; resolved once when the model is built. The model file never changes with the backend:
each op in ``trm_fast.ops`` asks `use_fused` and dispatches.
"""

import json
import os
import warnings
from importlib import resources
from typing import Callable, Optional

import torch

BACKENDS = ("auto", "reference", "fused")
ENV_VAR = "TRM_FAST_BACKEND"


class FusedUnavailableError(RuntimeError):
    """The fused backend was asked for where a kernel cannot run; the message says why."""


def resolve(config_backend: Optional[str], device=None) -> str:
    """Config key, then TRM_FAST_BACKEND, then 'auto'; fails early if 'fused' cannot run at all, or not on
    `device` when given."""
    name, source = config_backend, "config field 'backend'"
    if name is None:
        name, source = os.environ.get(ENV_VAR) or "auto", f"environment variable {ENV_VAR}"
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    if name == "fused":
        reasons = [r for r in (native_status(), triton_status()) if r]
        if device is not None and str(device).split(":")[0] != "cuda":
            reasons.insert(0, f"its kernels need a CUDA device, this run is on {device}")
        if reasons:
            raise FusedUnavailableError(f"backend 'fused' ({source}) cannot run: " + "; ".join(reasons)
                                        + "; choose 'auto' or 'reference'")
    return name


_status = {}  # memo of the two checks below; a plain dict, so torch.compile traces through it


def native_status() -> Optional[str]:
    """None if the CUDA extension trm_fast._C is importable, else why not."""
    if "native" not in _status:
        _status["native"] = _native_status()
    return _status["native"]


def _native_status() -> Optional[str]:
    try:
        from . import _C  # noqa: F401
        return None
    except ImportError as err:
        info = _build_info()
        if info.get("cuda_extension") is False:
            return f"the CUDA extension trm_fast._C was not built: {info.get('reason')}"
        return f"the CUDA extension trm_fast._C does not load ({err})"


def _build_info() -> dict:
    """What setup.py recorded of the build (trm_fast/_build_info.json); {} where it wrote nothing (a CMake build
    by hand)."""
    try:
        return json.loads(resources.files("trm_fast").joinpath("_build_info.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def sm90_status() -> Optional[str]:
    """None if trm_fast._C carries the Hopper kernels built on CUTLASS (csrc/sm90), else why not."""
    if "sm90" not in _status:
        reason = native_status()
        if reason is None:
            from . import _C

            if not getattr(_C, "WITH_SM90", False):
                reason = f"trm_fast._C was built without its CUTLASS kernels: {_build_info().get('cutlass_reason')}"
        _status["sm90"] = reason
    return _status["sm90"]


def triton_status() -> Optional[str]:
    """None if Triton imports, else why not. (Each op checks the device of its own inputs.)"""
    if "triton" not in _status:
        try:
            import triton  # noqa: F401
            _status["triton"] = None
        except ImportError as err:
            _status["triton"] = f"Triton is not installed ({err})"
    return _status["triton"]


def interpreting() -> bool:
    """Triton's CPU interpreter is on: it must be set before the kernels are imported."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_unsupported(t, name: str, backend: str) -> Optional[str]:
    """Why no Triton kernel can take tensor `t` (called `name` in the reason), or None: Triton missing, `t`
    off a CUDA device, or of a dtype the kernels do not compute in. Each op then checks its own shapes."""
    status = triton_status()
    if status is not None:
        return status
    if t.device.type != "cuda":
        # The CPU interpreter is a test facility: only an explicit 'fused' backend uses it.
        if not (t.device.type == "cpu" and interpreting() and backend == "fused"):
            return f"{name} is on {t.device}, the kernel needs a CUDA device"
    if t.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        return f"{name} must be bfloat16, float16 or float32, got {t.dtype}"
    return None


def unlike(x, x_name: str = "x", **tensors) -> Optional[str]:
    """Why the named tensors cannot go into one kernel with x (another dtype or device), or None; `x_name`: what
    the op calls x."""
    for name, t in tensors.items():
        if t.device != x.device or t.dtype != x.dtype:
            return f"{name} ({t.dtype} on {t.device}) must have {x_name}'s dtype and device ({x.dtype} on {x.device})"
    return None


_warned = set()

# The kernels 'auto' runs: those measured faster than what they replace on an H200, each op's docstring says by
# how much; swiglu_linear, which trades 1% of a training step's time for a sixth of its memory; and the ops that
# keep a sublayer's input alone, which run only where a model built with `recompute` asks for them
# (`recomputes_in_ops`); kept_attention, the attention sublayer's training op for the other models, which held
# 2 GiB less in the compiled sudoku_attn step at no cost in time; the attention kernel for a few short puzzles
# alone (trm_fast.ops.attention.auto_op); the whole attention layer as one kernel for one puzzle
# (trm_fast.ops.small_layer.MAX_ROWS); the training attention ops' one-tile backward kernel (attention_backward,
# up to 128 positions in 16-bit: 468 against 694 us at sudoku_attn's batch 768, the compiled step 89.9 against
# 92.7 ms on an H200, bench/results/2026-12-07_h200_54d41b9_attention_backward_*). The others (attention at
# larger batches, linear_rope, linear_add_rms_norm) run on 'fused' alone. Hopper's CUTLASS ops run only where the
# set names them (`offers`): linear_swiglu_sm90 is named (the gate/up GEMM with SwiGLU at CUTLASS's plain GEMM's
# pace: 396.8 against 581.3 us unfused on an H100, the engine's evaluation 873.6 against 894.7 ms with Triton's
# kernel, bench/results/2026-12-07_h100_5924a9a_*), and so is kept_mlp, the same GEMM writing gate_up for the
# training MLP's backward beside h (trm_fast.ops.recomputed_mlp), and linear_rope_sm90, the QKV GEMM with RoPE
# since its tables are loaded once per row (256.9 us, where cuBLAS's GEMM takes 191.3 and with inductor's RoPE pass
# ~279; the engine's evaluation 856.0 against 875.1 ms, bench/results/2026-12-07_h100_fe9f4af_*); the MLP's
# backward through the down projection and SwiGLU in one kernel (down_swiglu_backward: 6.7% faster alone, no
# faster in the step, bench/NOTES.md) is not, nor is carried_norm, the RMSNorm carried as partial sums of squares
# (trm_fast.ops.carried_norm: the engine's evaluation 913.2 against 872.6 ms without it, the compiled training
# step's forward + backward 98.2 against 93.7 ms, bench/results/2026-12-07_h100_9c9000d_*). An experiment may
# change the set before it builds a model (bench/engine_ops.py and bench/train_memory.py --auto-ops).
AUTO_OPS = {"add_rms_norm", "swiglu", "linear_swiglu", "linear_swiglu_sm90", "linear_rope_sm90", "swiglu_linear",
            "kept_mlp", "recomputed_mlp", "recomputed_attention", "kept_attention", "attention_backward",
            "token_mix", "attention_few_puzzles", "small_layer"}


def use_fused(backend: str, op: str, why_not: Callable[[], Optional[str]]) -> bool:
    """Whether `op` runs its fused kernel. `why_not()` returns None where the kernel can take this
    call, else the reason; it is not even asked on the reference backend, nor by 'auto' for an op outside
    AUTO_OPS."""
    if backend == "reference" or (backend == "auto" and op not in AUTO_OPS):
        return False
    unsupported = why_not()
    if unsupported is None:
        return True
    if backend == "fused":
        raise FusedUnavailableError(f"backend 'fused': {op} cannot run here: {unsupported}")
    warn_fallback(op, unsupported, stacklevel=4)
    return False


def offers(backend: str, op: str, why_not: Callable[[], Optional[str]]) -> bool:
    """Whether a second kernel for an op (Hopper's CUTLASS GEMM beside the Triton one) runs: only where AUTO_OPS
    names it, on 'auto' and 'fused' alike ('fused' runs each op's first kernel, as it always did), and where it
    can take the call; otherwise the op's first kernel is asked next, so this neither warns nor raises."""
    return backend != "reference" and op in AUTO_OPS and why_not() is None


def warn_fallback(op: str, reason: str, stacklevel: int = 3):
    """Say once per process and reason that `op` runs its reference instead of its kernel, and why."""
    if (op, reason) not in _warned:
        _warned.add((op, reason))
        warnings.warn(f"trm_fast: {op} falls back to the reference: {reason}", stacklevel=stacklevel)


def recomputes_in_ops(backend: str, device) -> bool:
    """Whether a model built with `recompute` keeps each sublayer's input alone through the ops that recompute
    the rest (trm_fast.ops.recomputed_mlp, recomputed_attention) rather than checkpointing each reasoning-module
    call whole: on a GPU, off the reference backend. One rule for the model, its compilation and the trainer; a
    model built without `recompute` runs its training attention op (kept_attention) by the same rule."""
    return backend != "reference" and torch.device(device).type == "cuda"


def records(*tensors) -> bool:
    """Whether autograd records an op on these tensors: grad mode on and one of them requiring grad. The
    forward-only kernels (attention, linear_swiglu) step aside then."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def leading_axes_flatten(t, trailing: int) -> bool:
    """Whether t's axes before its last `trailing` ones flatten into one stride (a view, no copy). Computed
    from the strides: torch.compile cannot trace a try/except around view() without a graph break."""
    for i in range(t.ndim - trailing - 1):
        if t.shape[i + 1] > 1 and t.shape[i] > 1 and t.stride(i) != t.stride(i + 1) * t.shape[i + 1]:
            return False
    return True


def leave_to_inductor(backend: str, *tensors) -> bool:
    """Whether 'auto' leaves an elementwise op (add + RMSNorm, SwiGLU) to torch.compile here. Inductor fuses
    those into the kernels around them; in a compiled forward that autograd does not record, that beat the
    standalone kernels on an H200 (the engine's 16-step sudoku_attn evaluation at batch 768 with its step on
    'auto': 948 ms against 927 ms with PyTorch's ops, bench/results/2026-11-29_h200_09fe4eb_*). Where autograd
    records on `tensors`, the kernels keep their fused backward (the trainer's compiled step was faster with
    them)."""
    return backend == "auto" and torch.compiler.is_compiling() and not records(*tensors)
