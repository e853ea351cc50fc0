"""Make sure the tests exercise the installed trm_fast, never the source tree by accident.

`python -m pytest` puts the current directory on sys.path, and the source `trm_fast/` lacks the
`trm_fast.kernels` subpackage and the built extension. The repository root is removed from
sys.path before trm_fast is imported, and an uninstalled package stops the run with the fix.
"""

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run under the interpreter in the kernel tests. It must be on before any
# kernel module is imported; the `auto` backend never uses it, so the model tests stay on the reference.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]
for name in [m for m in sys.modules if m == "trm_fast" or m.startswith("trm_fast.")]:
    del sys.modules[name]

try:
    importlib.metadata.distribution("trm_fast")
    import trm_fast  # noqa: E402
    import trm_fast.kernels  # noqa: E402,F401
except (ImportError, importlib.metadata.PackageNotFoundError) as err:
    raise pytest.UsageError(f"trm_fast is not installed ({err}): run `pip install '.[test]'` first; "
                            "the tests exercise the installed package, not the source tree") from None


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
