"""Benchmark the installed trm_fast, never the source tree, and skip with the reason where the fused
kernels cannot run (no CUDA device, no built extension, no Triton)."""

from pathlib import Path

import pytest
import torch
from installed import use_installed_trm_fast

use_installed_trm_fast("the benchmarks time the installed package, not the source tree")
from trm_fast import backend  # noqa: E402


def _why_not() -> str:
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    return "; ".join(r for r in (backend.native_status(), backend.triton_status()) if r)


def pytest_collection_modifyitems(config, items):
    reason = _why_not()
    if not reason:
        return
    skip = pytest.mark.skip(reason=f"fused kernels cannot be benchmarked here: {reason}")
    here = Path(__file__).parent
    for item in items:
        # this hook sees the whole session's items, also those of tests/ when both are run
        if here in item.path.parents:
            item.add_marker(skip)
