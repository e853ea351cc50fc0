"""Where a kernel's time goes: one call of each named micro-benchmark case (bench/test_kernels.py's CASES),
after a warm-up call that compiles and tunes it, between cudaProfilerStart and cudaProfilerStop, so that
Nsight Compute profiles exactly that call and nothing of the set-up:

    ncu --profile-from-start off --set detailed python bench/ncu_kernels.py fused "linear_rope forward"
    python bench/ncu_kernels.py --list

IMPL is `fused` (trm_fast's kernel) or `reference` (what the compiled model runs without it: cuBLAS and
inductor's kernels). `bash bench/fused_bench.sh COMMIT ncu` runs it on the device.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/test_kernels.py, wherever this runs from


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("impl", nargs="?", choices=("fused", "reference"))
    parser.add_argument("cases", nargs="*", help="names of bench/test_kernels.py's CASES")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    args = parser.parse_args()
    import torch
    from test_kernels import CASES

    if args.list:
        print("\n".join(CASES))
        return
    unknown = [c for c in args.cases if c not in CASES]
    if args.impl is None or not args.cases or unknown:
        parser.error(f"give IMPL and known case names (unknown: {unknown}); --list prints them")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device; none is visible")
    cudart = torch.cuda.cudart()
    for name in args.cases:
        torch.manual_seed(0)
        call = CASES[name]()[0][args.impl]
        call()  # compiles and autotunes outside the profiled range
        torch.cuda.synchronize()
        print(f"profiling {args.impl} {name!r}", flush=True)
        cudart.cudaProfilerStart()
        call()
        torch.cuda.synchronize()
        cudart.cudaProfilerStop()


if __name__ == "__main__":
    main()
