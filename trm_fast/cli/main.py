"""`trm-fast <command> ...`: each command lives in its own module of this package, which defines
`add_arguments(parser)` and `run(args) -> int`, and is imported only when its command runs."""

import argparse
import importlib
import os
import signal
import sys

from ..disk import DiskFullError
from ..resources import DeviceOutOfMemory
from . import UsageError

# command -> (module, one-line help)
COMMANDS = {
    "data": ("trm_fast.cli.data", "build Sudoku-Extreme, Maze-Hard or ARC datasets in the official format"),
    "train": ("trm_fast.cli.train", "train a TRM/HRM from a config: the official recipe, resumable, multi-GPU"),
    "eval": ("trm_fast.cli.eval", "evaluate a checkpoint: accuracies, halting statistics, ARC pass@K and submission"),
    "export": ("trm_fast.cli.export", "write a checkpoint's model as one small .safetensors file, its config inside"),
    "solve": ("trm_fast.cli.solve", "solve Sudoku puzzles with a trained model, stopping each when the model is sure"),
    "bench": ("trm_fast.cli.bench", "time train steps and evaluations per backend, side by side, against the ceilings"),
    "profile": ("trm_fast.cli.profile", "per-kernel time by recursion stage, a trace, a roofline; Nsight Compute"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trm-fast", description="Tiny Recursive Models, fast: data, training, "
                                     "evaluation and benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(_module=module, _prog=cmd.prog)
        importlib.import_module(module).add_arguments(cmd)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`train CONFIG --resume epochs=3`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return importlib.import_module(args._module).run(args) or 0
    except (UsageError, DiskFullError, DeviceOutOfMemory) as err:  # expected: one line; anything else is a bug
        print(f"{args._prog}: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1
    except KeyboardInterrupt as err:  # the shell's convention: 128 + the signal's number
        print("trm-fast: interrupted" + (f": {err}" if str(err) else ""), file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)
    except BrokenPipeError:  # the reader left early (`trm-fast solve ... | head`): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush finds no pipe
        return 0


if __name__ == "__main__":
    sys.exit(main())
