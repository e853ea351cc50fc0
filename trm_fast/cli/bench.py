"""`trm-fast bench CONFIG...`: time a training step and the 16-step evaluation per backend, side by side on
the same weights and inputs, against the hardware's ceilings measured in the same run."""

import argparse
import json
import os
import sys

from ..disk import make_dirs, reporting_full_disk
from . import UsageError, checks, usage_errors


def _csv(text: str):
    return [t.strip() for t in text.split(",") if t.strip()]


def _batches(text: str):
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch takes a comma list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--batch sizes must be >= 1, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser):
    from ..bench.configs import NAMES
    from ..bench.harness import BACKENDS
    from ..models.config import RECOMPUTE_MODES

    parser.add_argument("configs", nargs="*", metavar="CONFIG",
                        help=f"{', '.join(NAMES)}, or a training config yaml (default: sudoku_attn on a GPU, "
                             "tiny on a CPU)")
    parser.add_argument("--mode", type=_csv, default=["train", "infer"],
                        help="comma list of: train (one full step), infer (the 16-step evaluation); default both")
    parser.add_argument("--backend", type=_csv, default=None,
                        help=f"comma list of: {', '.join(BACKENDS)} (default: the first three that can run here)")
    parser.add_argument("--batch", type=_batches, default=None, metavar="N,N,...",
                        help="batch sizes to sweep, e.g. 1,8,64,768 (default: the config's)")
    parser.add_argument("--shape", default=None, metavar="seq_len=N,vocab_size=N,num_puzzle_identifiers=N",
                        help="data shape of a yaml config whose dataset is not built here")
    parser.add_argument("--recompute", nargs="?", const=True, default=False, choices=RECOMPUTE_MODES,
                        metavar="MODE", help="the engine's training step recomputes the gradient cycle's layers in the "
                        "backward (arch recompute: true; less memory, one more forward of that cycle); "
                        "--recompute mlp: its channel MLPs alone (arch recompute: mlp)")
    parser.add_argument("--reps", type=int, default=None, metavar="N", help="timed repeats (default 10 train, 5 infer)")
    parser.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed units first (default 3)")
    parser.add_argument("--json", metavar="FILE", help="append one JSON row per measurement (../shared/BENCH.md)")
    parser.add_argument("--png", metavar="FILE", help="throughput and speedup plot (default: bench.png, or "
                        "the --json file's name with .png)")
    parser.add_argument("--no-png", action="store_true", help="write no plot")
    parser.add_argument("--commit", default=None, help="the commit measured (default: git rev-parse HEAD here)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(args) -> int:
    import torch

    from ..bench import configs, harness, report

    if args.reps is not None and args.reps < 1 or args.warmup < 1:
        raise UsageError("--reps and --warmup must be >= 1")
    device = checks.device(args.device)
    png = None if args.no_png else args.png or (os.path.splitext(args.json)[0] + ".png" if args.json else "bench.png")
    if args.json:
        checks.writable(args.json, "--json")
    if png:
        checks.writable(png, "--png")
    with usage_errors(ValueError):  # unknown config, mode or backend, or a backend this machine cannot run
        names = args.configs or (["sudoku_attn"] if device.type == "cuda" else ["tiny"])
        backends = args.backend or harness.default_backends(device)
        shape = configs.parse_shape(args.shape) if args.shape else None
        bench_configs = [configs.load(name, shape) for name in names]
        if args.recompute:
            bench_configs = [bc.with_recompute(args.recompute) for bc in bench_configs]
        harness.check(args.mode, backends, args.batch or [1], device)

    commit = args.commit or _commit()
    reps = {} if args.reps is None else dict(reps_train=args.reps, reps_infer=args.reps)

    def save(row):
        if args.json:
            with reporting_full_disk(args.json):
                make_dirs(os.path.dirname(os.path.abspath(args.json)))
                with open(args.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")

    print(f"trm-fast bench on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}: "
          f"{', '.join(names)} | {', '.join(args.mode)} | {', '.join(backends)} | commit {commit}", flush=True)
    rows = []
    for bc in bench_configs:
        rows += harness.run(bc, args.mode, backends, args.batch or [bc.batch], device, commit, warmup=args.warmup,
                            log=lambda line: print(line, flush=True), on_row=save, **reps)
    print()
    print(report.format_table(rows))
    for line in report.noise_warnings(rows) + report.clock_warnings(rows) + report.floor_warnings(rows):
        print(f"trm-fast bench: warning: {line}", file=sys.stderr)
    if args.json:
        print(f"\nappended {len(rows)} rows to {args.json}")
    if png:
        report.plot(rows, png, title=f"trm-fast bench, {rows[0].get('device', device.type)}, commit {commit}")
        print(f"wrote {png}")
    return 1 if any("error" in r for r in rows) else 0
