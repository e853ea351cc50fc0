"""The tests exercise the installed trm_fast (installed.py); GPU tests skip with the reason on a CPU."""

import os

import pytest
import torch

# Without a GPU, Triton kernels run under the interpreter in the kernel tests. It must be on before any
# kernel module is imported; the `auto` backend never uses it, so the model tests stay on the reference.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from installed import use_installed_trm_fast  # noqa: E402

use_installed_trm_fast("the tests exercise the installed package, not the source tree")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
