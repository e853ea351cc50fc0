"""What the single-GEMM CUTLASS shape (csrc/sm90/gemm_swiglu_pairs.cu) relies on, checked without a GPU: in every
thread's accumulator fragment of its tiled MMAs, values 2i and 2i + 1 are one row's columns 2q and 2q + 1.
tests/sm90/fragment_pairs.cu computes that with CuTe's layout algebra on the host; this test compiles and runs
it where nvcc and CUTLASS's headers are found ($CUTLASS_PATH or the nvidia-cutlass package), as setup.py finds
them, and skips with the reason elsewhere (CI's machine has nvcc but no CUTLASS). About 30 s of compiling."""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "sm90" / "fragment_pairs.cu"


def _cutlass_include():
    root = os.environ.get("CUTLASS_PATH")
    candidates = [Path(root) / "include"] if root else []
    spec = importlib.util.find_spec("cutlass_library")
    candidates += [Path(p) / "source" / "include" for p in (spec.submodule_search_locations or [])] if spec else []
    return next((c for c in candidates if (c / "cutlass" / "cutlass.h").is_file()), None)


def test_accumulator_pairs_are_side_by_side(tmp_path):
    nvcc, include = shutil.which("nvcc"), _cutlass_include()
    if nvcc is None or include is None:
        pytest.skip(f"needs nvcc and CUTLASS's headers (nvcc: {nvcc}, CUTLASS: {include})")
    binary = tmp_path / "fragment_pairs"
    subprocess.run([nvcc, "-std=c++17", "-O1", "-arch=sm_90a", "--expt-relaxed-constexpr", f"-I{include}",
                    str(SOURCE), "-o", str(binary)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 not side by side" in result.stdout
