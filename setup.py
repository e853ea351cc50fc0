"""Build script: the pure-Python package, plus the CUDA extension ``trm_fast._C`` where nvcc is found.

The extension is built by CMake (Ninja when present) with pybind11 and links only the CUDA
runtime: no torch at build time, so one build serves every supported torch. Knobs:

- ``TRM_FAST_BUILD_CUDA=0``: skip the extension even where nvcc exists.
- ``CMAKE_ARGS``: extra arguments for the CMake configure step.
- ``CMAKE_BUILD_PARALLEL_LEVEL`` (or ``MAX_JOBS``): parallel compile jobs.
- ``CUTLASS_PATH``: a CUTLASS checkout (its ``include/``) for the Hopper kernels of ``csrc/sm90``; else
  the headers of ``nvidia-cutlass``, a build requirement (pyproject.toml), so an isolated build has them; a
  build with ``--no-build-isolation`` needs it installed first. Without either, those kernels are not built
  and the Triton kernels run in their place.

What was built, and why not where nothing was, is written to ``trm_fast/_build_info.json`` so
that the fused backend can say at run time why it is unavailable.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def find_nvcc():
    """Return (path to nvcc or None, reason when None)."""
    if os.environ.get("TRM_FAST_BUILD_CUDA", "1").strip() == "0":
        return None, "TRM_FAST_BUILD_CUDA=0 was set at install time"
    candidates = [os.environ.get("CUDACXX"), shutil.which("nvcc")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(os.path.join(home, "bin", "nvcc"))
    for cand in candidates:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand, ""
    return None, "nvcc was not found at install time (set CUDA_HOME or put nvcc on PATH)"


NVCC, NO_CUDA_REASON = find_nvcc()


def find_cutlass():
    """Return (CUTLASS's include folder or None, reason when None): $CUTLASS_PATH, else nvidia-cutlass."""
    root = os.environ.get("CUTLASS_PATH")
    if root:
        include = Path(root) / "include"
        if (include / "cutlass" / "cutlass.h").is_file():
            return str(include), ""
        return None, f"CUTLASS_PATH={root} has no include/cutlass/cutlass.h"
    import importlib.util

    spec = importlib.util.find_spec("cutlass_library")  # nvidia-cutlass's package, which carries the headers
    for location in (spec.submodule_search_locations or []) if spec else []:
        include = Path(location) / "source" / "include"
        if (include / "cutlass" / "cutlass.h").is_file():
            return str(include), ""
    return None, ("CUTLASS's headers were not found at install time (a build without isolation needs "
                  "pip install nvidia-cutlass first; or set CUTLASS_PATH)")


CUTLASS, NO_CUTLASS_REASON = find_cutlass() if NVCC else (None, NO_CUDA_REASON)
CUDA_SOURCES = sorted(p.name for p in (ROOT / "csrc").glob("*.cu"))
if NVCC and not CUDA_SOURCES:
    NVCC, NO_CUDA_REASON = None, "this version ships no CUDA sources"


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configure and build CMakeLists.txt, placing the module where setuptools expects it."""

    def build_extension(self, ext):
        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(self.build_temp).resolve() / "cmake"
        # Configure afresh every time: each isolated pip build has new cmake and ninja paths that an old
        # CMakeCache.txt would still point to, and architectures from an earlier CMAKE_ARGS must not stick.
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        import pybind11

        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DCMAKE_CUDA_COMPILER={NVCC}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DTRM_FAST_CUTLASS_INCLUDE={CUTLASS or ''}",
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        # check=True: a failed CUDA compile must fail the install loudly, never fall back silently.
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--parallel", jobs], check=True)


class BuildPyWithInfo(build_py):
    """Also record whether the extension is part of this build, and why not."""

    def run(self):
        super().run()
        info = {"cuda_extension": NVCC is not None, "reason": NO_CUDA_REASON, "nvcc": NVCC,
                "cutlass": CUTLASS, "cutlass_reason": NO_CUTLASS_REASON}
        # an editable install (pip install -e) imports the package from the source tree: write it there
        root = ROOT if getattr(self, "editable_mode", False) else Path(self.build_lib)
        target = root / "trm_fast" / "_build_info.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(info) + "\n")


if NVCC:
    print(f"trm_fast: building the CUDA extension trm_fast._C with {NVCC}; Hopper's CUTLASS kernels: "
          f"{CUTLASS or NO_CUTLASS_REASON}", file=sys.stderr)
else:
    print(f"trm_fast: no CUDA extension built: {NO_CUDA_REASON}", file=sys.stderr)

setup(
    packages=find_packages(include=["trm_fast", "trm_fast.*"]) + ["trm_fast.kernels"],
    # Triton kernels live at the top of the repository but install inside the package, so
    # nothing named `kernels` lands at the top of site-packages.
    package_dir={"trm_fast.kernels": "kernels"},
    package_data={"trm_fast": ["configs/*.yaml", "pretrained/*.safetensors"]},
    ext_modules=[CMakeExtension("trm_fast._C")] if NVCC else [],
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPyWithInfo},
)
