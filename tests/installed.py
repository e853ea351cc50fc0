"""Make a test session import the installed trm_fast, never the source tree by accident.

`python -m pytest` puts the current directory on sys.path, and the source `trm_fast/` lacks the
`trm_fast.kernels` subpackage and the built extension. The repository root is removed from sys.path
before trm_fast is imported, and an uninstalled package stops the run with the fix. Used by the
conftest.py of tests/ and of bench/ (pyproject puts tests/ on the path of both).
"""

import importlib.metadata
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def use_installed_trm_fast(why: str):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]
    for name in [m for m in sys.modules if m == "trm_fast" or m.startswith("trm_fast.")]:
        del sys.modules[name]
    try:
        importlib.metadata.distribution("trm_fast")
        import trm_fast  # noqa: F401
        import trm_fast.kernels  # noqa: F401  (only an installed trm_fast has it)
    except (ImportError, importlib.metadata.PackageNotFoundError) as err:
        raise pytest.UsageError(f"trm_fast is not installed ({err}): run `pip install '.[test]'` first; {why}") \
            from None
