"""What the single-GEMM CUTLASS shape (csrc/sm90/gemm_swiglu_pairs.cu) relies on, checked without a GPU: in every
thread's accumulator fragment of its tiled MMAs, values 2i and 2i + 1 are one row's columns 2q and 2q + 1.
tests/sm90/fragment_pairs.cu computes that with CuTe's layout algebra on the host; this test compiles and runs
it with nvcc against the CUTLASS headers the installed extension was built with (what setup.py recorded in
trm_fast/_build_info.json), and skips with the reason where there are none (CI's build has no CUTLASS). About
30 s of compiling."""

import shutil
import subprocess
from pathlib import Path

import pytest
from trm_fast import backend

SOURCE = Path(__file__).resolve().parent.parent / "sm90" / "fragment_pairs.cu"


def test_accumulator_pairs_are_side_by_side(tmp_path):
    nvcc, include = shutil.which("nvcc"), backend._build_info().get("cutlass")
    if nvcc is None or include is None:
        pytest.skip(f"needs nvcc and an extension built with CUTLASS (nvcc: {nvcc}, CUTLASS: {include})")
    binary = tmp_path / "fragment_pairs"
    subprocess.run([nvcc, "-std=c++17", "-O1", "-arch=sm_90a", "--expt-relaxed-constexpr", f"-I{include}",
                    str(SOURCE), "-o", str(binary)], check=True, capture_output=True, text=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 not side by side" in result.stdout and "0 not in place" in result.stdout
