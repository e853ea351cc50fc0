"""`trm-fast eval CHECKPOINT --data DIR`: accuracies, halting statistics, ARC pass@K and submission."""

import argparse
import json
import os

from ..disk import atomic_file
from ..resources import out_of_memory
from . import BAD_INPUT, UsageError, checks, usage_errors


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a trm_fast step_N.pt, or an official checkpoint")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset directory (official format)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="rows the engine runs at once (default 256; on a CPU never more than the examples)")
    parser.add_argument("--halting", choices=("all", "q"), default="all",
                        help="all: every example runs halt_max_steps steps, the official evaluation (default); "
                             "q: each stops at the first step at which the model says halt, and its row takes the "
                             "next example")
    parser.add_argument("--halt-threshold", type=checks.finite_float, metavar="T",
                        help="the model says halt where Q-halt exceeds T (default: the model file's, tuned on "
                             "training puzzles; 0, as in training, for other checkpoints)")
    parser.add_argument("--out", metavar="FILE.json", help="metrics JSON (default: CHECKPOINT.eval.json)")
    parser.add_argument("--png", metavar="FILE.png",
                        help="also plot, per set, the steps at which examples halt and the accuracy by step")
    parser.add_argument("--submission", metavar="FILE.json",
                        help="ARC: Kaggle submission (default: submission.json next to --out)")
    parser.add_argument("--config", metavar="YAML", help="config with the arch of an official checkpoint "
                        "(default: all_config.yaml next to it)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights even where EMA weights exist")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--pass-k", type=int, nargs="+", default=[1, 2], metavar="K", help="ARC: pass@K (default 1 2)")


def _write_json(obj, path: str):
    with atomic_file(path) as f:
        json.dump(obj, f, indent=1)


def run(args) -> int:
    from ..evaluate import evaluate_checkpoint, format_report
    from ..evaluate.report import plot_report

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if min(args.pass_k) < 1:
        raise UsageError(f"--pass-k values must be >= 1, got {args.pass_k}")
    device = checks.device(args.device)
    out = args.out or args.checkpoint + ".eval.json"
    submission_path = args.submission or os.path.join(os.path.dirname(os.path.abspath(out)), "submission.json")
    checks.writable(out, "--out")
    if args.png:
        checks.writable(args.png, "--png")
    if args.submission or os.path.isfile(os.path.join(args.data, "test_puzzles.json")):  # ARC writes a submission
        checks.writable(submission_path, "--submission")
    import torch

    with usage_errors(*BAD_INPUT):
        try:
            result = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, batch_size=args.batch_size,
                                         device=str(device), config_path=args.config, use_ema=not args.no_ema,
                                         pass_ks=args.pass_k, halting=args.halting,
                                         halt_threshold=args.halt_threshold)
        except torch.OutOfMemoryError as err:
            raise out_of_memory(err, f"evaluating {args.checkpoint}",
                                [f"a smaller --batch-size (now {args.batch_size})"], device) from err
    submission = result.pop("submission", None)
    print(format_report(result))
    _write_json(result, out)
    print(f"\nwrote {out}")
    if args.png:
        plot_report(result, args.png)
        print(f"wrote {args.png}")
    if submission is not None:
        _write_json(submission, submission_path)
        print(f"wrote {submission_path}")
    return 0
