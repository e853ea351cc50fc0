"""`python -m trm_fast.bench`: time train steps and 16-step evaluations, append JSON rows."""

import argparse
import json
import sys

import torch

from .configs import CONFIGS
from .harness import BACKENDS, run


def _csv(text):
    return [t for t in text.split(",") if t]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m trm_fast.bench", description=__doc__)
    p.add_argument("--config", type=_csv, default=["sudoku_attn"], help=f"comma list of: {', '.join(CONFIGS)}")
    p.add_argument("--mode", type=_csv, default=["train", "infer"], help="comma list of: train, infer")
    p.add_argument("--backend", type=_csv, default=list(BACKENDS), help=f"comma list of: {', '.join(BACKENDS)}")
    p.add_argument("--batch", type=_csv, default=None, help="comma list of batch sizes (default: the config's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default: 10 train, 5 infer)")
    p.add_argument("--json", default=None, help="append one JSON row per measurement to this file")
    p.add_argument("--commit", default="unknown", help="the commit measured (the device checkout may lag)")
    args = p.parse_args(argv)
    for name in args.config:
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    try:
        batches = [int(b) for b in args.batch] if args.batch else None
    except ValueError:
        p.error(f"--batch takes integers, got {','.join(args.batch)}")
    if batches and min(batches) < 1:
        p.error("--batch sizes must be >= 1")
    reps = {} if args.reps is None else dict(reps_train=args.reps, reps_infer=args.reps)
    failed = False
    for name in args.config:
        rows = run(name, args.mode, args.backend, batches or [CONFIGS[name][2]], args.device, args.commit, **reps)
        failed |= any("error" in r for r in rows)
        if args.json:
            with open(args.json, "a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
