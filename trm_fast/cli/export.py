"""`trm-fast export CHECKPOINT OUT.safetensors`: a trained model as one small file, its config inside."""

import argparse

from . import BAD_INPUT, UsageError, checks, usage_errors

DTYPES = ("bfloat16", "float16", "float32")


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a trm_fast step_N.pt (its EMA weights where it has them), an official checkpoint "
                             "(with --config or all_config.yaml beside it), or a model file")
    parser.add_argument("out", metavar="OUT.safetensors", help="the model file to write")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16", help="of the weights (default bfloat16)")
    parser.add_argument("--halt-threshold", type=checks.finite_float, default=0.0, metavar="T",
                        help="the threshold to stop at with halting q, tuned on training puzzles (default 0)")
    parser.add_argument("--description", default="", metavar="TEXT",
                        help="stored with the weights: what the model was trained on, how well it does")
    parser.add_argument("--config", metavar="YAML", help="config with the arch of an official checkpoint")
    parser.add_argument("--no-ema", action="store_true", help="the raw weights even where EMA weights exist")


def run(args) -> int:
    import torch

    from ..evaluate.checkpoint import read_checkpoint
    from ..evaluate.model_file import SUFFIX, write_model_file

    if not args.out.endswith(SUFFIX):
        raise UsageError(f"OUT must end with {SUFFIX}, got {args.out}")
    checks.writable(args.out, "OUT")
    with usage_errors(*BAD_INPUT):
        arch, weights, metadata, ema = read_checkpoint(args.checkpoint, args.config, not args.no_ema)
    size = write_model_file(args.out, arch, weights, metadata, ema=ema, dtype=getattr(torch, args.dtype),
                            halt_threshold=args.halt_threshold, description=args.description)
    params = sum(v.numel() for v in weights.values() if v.is_floating_point())
    print(f"wrote {args.out}: {params:,} weights in {args.dtype}, {size / 2**20:.1f} MiB"
          + (" (the EMA weights)" if ema else ""))
    return 0
