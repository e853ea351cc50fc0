"""What the pairs GEMMs of csrc/sm90 (gemm_swiglu.cuh, gemm_rope_kernel.cuh) rely on, checked without a GPU: in every
thread's accumulator fragment of its tiled MMAs, values 2i and 2i + 1 are one row's columns 2q and 2q + 1, and
eight such pairs of one row make a group. tests/sm90/fragment_pairs.cu computes that with CuTe's layout algebra on
the host; this test compiles and runs it with nvcc against CUTLASS's headers: those the installed extension was
built with where they still exist (trm_fast/_build_info.json), else those of an installed nvidia-cutlass (an
isolated build's copy is gone once the build ends, so CI skips it). Skips with the reason where nvcc or the
headers are missing. About 30 s of compiling."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from trm_fast import backend

SOURCE = Path(__file__).resolve().parent.parent / "sm90" / "fragment_pairs.cu"


def _cutlass_include():
    """CUTLASS's include folder: the build's, else nvidia-cutlass's (its package cutlass_library), else None."""
    candidates = [backend._build_info().get("cutlass")]
    spec = importlib.util.find_spec("cutlass_library")
    candidates += [str(Path(p) / "source" / "include") for p in (spec.submodule_search_locations or [])] if spec else []
    return next((c for c in candidates if c and (Path(c) / "cutlass" / "cutlass.h").is_file()), None)


def test_accumulator_pairs_are_side_by_side(tmp_path):
    nvcc, include = shutil.which("nvcc"), _cutlass_include()
    if nvcc is None or include is None:
        pytest.skip(f"needs nvcc and CUTLASS's headers (nvcc: {nvcc}, CUTLASS: {include}; pip install nvidia-cutlass)")
    binary = tmp_path / "fragment_pairs"
    subprocess.run([nvcc, "-std=c++17", "-O1", "-arch=sm_90a", "--expt-relaxed-constexpr", f"-I{include}",
                    str(SOURCE), "-o", str(binary)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 not side by side" in result.stdout and "0 not in place" in result.stdout
