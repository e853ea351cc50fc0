"""`trm-fast profile CONFIG`: a few training steps or evaluations under torch.profiler, each recursion level
named; a per-kernel table by stage, a Chrome/Perfetto trace, a roofline PNG, and Nsight Compute on request."""

import argparse
import os

from ..disk import reporting_full_disk
from . import UsageError, checks, usage_errors


def add_arguments(parser: argparse.ArgumentParser):
    from ..bench.configs import NAMES

    parser.add_argument("config", metavar="CONFIG", help=f"{', '.join(NAMES)}, or a training config yaml")
    parser.add_argument("--mode", choices=("train", "infer"), default="train",
                        help="train (one full step per unit) or infer (one 16-step evaluation per unit)")
    parser.add_argument("--backend", default=None,
                        help="engine (what users get: trm_fast.Engine for infer, the trainer's step for train), fused, "
                             "reference-eager or reference-compile (default: engine)")
    parser.add_argument("--batch", type=int, default=None, metavar="N", help="batch size (default: the config's)")
    parser.add_argument("--shape", default=None, metavar="seq_len=N,vocab_size=N,num_puzzle_identifiers=N",
                        help="data shape of a yaml config whose dataset is not built here")
    parser.add_argument("--steps", type=int, default=2, metavar="N", help="units profiled (default 2)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N", help="units run first (default 2)")
    parser.add_argument("--compile", action="store_true",
                        help="profile the model as `trm-fast bench` runs it (torch.compile); stages inside an "
                             "ACT step are then not separated")
    parser.add_argument("--depth", type=int, default=4, metavar="N", help="stage levels in the table (default 4)")
    parser.add_argument("--top", type=int, default=5, metavar="N", help="kernels listed per stage (default 5)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: profile_CONFIG_MODE_BACKEND)")
    parser.add_argument("--ncu", metavar="KERNEL_REGEX",
                        help="also run Nsight Compute on the kernels matching this regex inside the profiled units")
    parser.add_argument("--ncu-count", type=int, default=20, metavar="N", help="kernels ncu profiles (default 20)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--ncu-child", action="store_true", help=argparse.SUPPRESS)


def _child_args(args, device):
    out = [args.config, "--mode", args.mode, "--backend", args.backend, "--batch", str(args.batch),
           "--warmup", str(args.warmup), "--device", str(device)]
    if args.shape:
        out += ["--shape", args.shape]
    if args.compile:
        out.append("--compile")
    return out


def _run_child(bc, args, device):
    """Under ncu: the units alone, the measured ones inside the NVTX range ncu filters on."""
    import torch

    from ..profile import ncu
    from ..profile.runner import build_unit
    from ..profile.stages import Marker

    marker = Marker(nvtx=True)
    _, unit = build_unit(bc, args.mode, args.backend, args.batch, device, args.compile, marker)
    for _ in range(args.warmup):
        unit()
    torch.cuda.synchronize(device)
    with marker(ncu.RANGE):
        unit()
    torch.cuda.synchronize(device)
    return 0


def run(args) -> int:
    from ..bench import configs, harness

    for flag in ("steps", "warmup", "depth", "top", "ncu_count"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    device = checks.device(args.device)
    with usage_errors(ValueError):
        if args.ncu and device.type != "cuda":
            raise ValueError("--ncu profiles GPU kernels and needs a CUDA device")
        args.backend = args.backend or "engine"
        bc = configs.load(args.config, configs.parse_shape(args.shape) if args.shape else None)
        args.batch = args.batch or bc.batch
        harness.check([args.mode], [args.backend], [args.batch], device)
    if args.ncu_child:
        return _run_child(bc, args, device)

    from ..profile import ncu, runner
    from ..profile.kernels import short_name

    out = args.out or f"profile_{bc.name}_{args.mode}_{args.backend}{'_compiled' if args.compile else ''}"
    checks.writable(out, "--out", directory=True)
    with usage_errors(ValueError), reporting_full_disk(out):
        summary = runner.profile(bc, args.mode, args.backend, args.batch, device, out, steps=args.steps,
                                 warmup=args.warmup, compile_=args.compile, depth=args.depth, top=args.top,
                                 log=lambda line: print(line, flush=True))
    print()
    print(summary["text"])
    print(f"\nwrote {out}/profile.txt, {out}/kernels.json, {out}/roofline.png and {out}/trace.json.gz "
          "(open in https://ui.perfetto.dev or chrome://tracing)")
    if args.ncu:
        with usage_errors(ncu.NcuUnavailable):
            text = ncu.run(args.ncu, _child_args(args, device), args.ncu_count, out, short_name,
                           log=lambda line: print(line, flush=True))
        print("\nNsight Compute, means per kernel (percentages of the hardware's peak):\n" + text)
        print(f"wrote {os.path.join(out, 'ncu.txt')} and {os.path.join(out, 'ncu.csv')}")
    return 0
