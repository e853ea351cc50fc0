"""The backend switch: which implementation of each op the model runs.

- ``reference``: plain PyTorch, on any device (bit-identical to the official model).
- ``fused``: trm_fast's kernels; an error naming the reason where one cannot run.
- ``auto`` (default): fused where the device, dtype and shape are supported, otherwise the reference
  with one warning per op and reason.

Chosen, in this order, by the config key ``backend``, the environment variable ``TRM_FAST_BACKEND``,
then ``auto``; resolved once when the model is built. The model file never changes with the backend:
each op in ``trm_fast.ops`` asks `use_fused` and dispatches.
"""

import json
import os
import warnings
from functools import lru_cache
from importlib import resources
from typing import Optional

BACKENDS = ("auto", "reference", "fused")
ENV_VAR = "TRM_FAST_BACKEND"


class FusedUnavailableError(RuntimeError):
    """The fused backend was asked for where a kernel cannot run; the message says why."""


def resolve(config_backend: Optional[str]) -> str:
    """Config key, then TRM_FAST_BACKEND, then 'auto'; fails early if 'fused' cannot run at all."""
    name, source = config_backend, "config field 'backend'"
    if name is None:
        name, source = os.environ.get(ENV_VAR) or "auto", f"environment variable {ENV_VAR}"
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    if name == "fused":
        reasons = [r for r in (native_status(), triton_status()) if r]
        if reasons:
            raise FusedUnavailableError(f"backend 'fused' ({source}) cannot run: " + "; ".join(reasons))
    return name


@lru_cache(maxsize=None)
def native_status() -> Optional[str]:
    """None if the CUDA extension trm_fast._C is importable, else why not."""
    try:
        from . import _C  # noqa: F401
        return None
    except ImportError as err:
        try:
            info = json.loads(resources.files("trm_fast").joinpath("_build_info.json").read_text())
        except (FileNotFoundError, ValueError):
            info = {}
        if info.get("cuda_extension") is False:
            return f"the CUDA extension trm_fast._C was not built: {info.get('reason')}"
        return f"the CUDA extension trm_fast._C does not load ({err})"


@lru_cache(maxsize=None)
def triton_status() -> Optional[str]:
    """None if Triton kernels can run (a CUDA device, or the interpreter), else why not."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    import torch

    if not (torch.cuda.is_available() or interpreting()):
        return "no CUDA device is visible (and TRITON_INTERPRET=1 is not set)"
    return None


def interpreting() -> bool:
    """Triton's CPU interpreter is on: it must be set before the kernels are imported."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_warned = set()


def use_fused(backend: str, op: str, unsupported: Optional[str]) -> bool:
    """Whether `op` runs its fused kernel: `unsupported` is None, or why the kernel cannot take this call."""
    if backend == "reference":
        return False
    if unsupported is None:
        return True
    if backend == "fused":
        raise FusedUnavailableError(f"backend 'fused': {op} cannot run here: {unsupported}")
    if (op, unsupported) not in _warned:
        _warned.add((op, unsupported))
        warnings.warn(f"trm_fast: {op} falls back to the reference: {unsupported}", stacklevel=3)
    return False
