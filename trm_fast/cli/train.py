"""`trm-fast train CONFIG [key=value ...] [--resume | --resume-from CHECKPOINT]`; multi-GPU with
`torchrun --nproc-per-node N --no-python trm-fast train ...` (or `torchrun ... -m trm_fast.cli.main train ...`)."""

import argparse

from . import BAD_INPUT, checks, usage_errors


def add_arguments(parser: argparse.ArgumentParser):
    from ..train.config import recipe_names

    parser.add_argument("config", metavar="CONFIG",
                        help="a YAML config, or a shipped recipe: " + ", ".join(recipe_names()))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config keys, e.g. lr=1e-4 arch.L_cycles=4 data_paths=[data/sudoku]")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_const", const="latest",
                        help="continue the run exactly from the newest step_N.pt of its run directory")
    resume.add_argument("--resume-from", dest="resume", metavar="CHECKPOINT",
                        help="continue the run exactly from CHECKPOINT")
    parser.add_argument("--profile-steps", type=checks.count, default=0, metavar="N",
                        help="profile N steps after the first 10 (torch.profiler, the whole trainer): "
                             "RUN_DIR/profile/steps.txt and trace.json.gz")


def run(args) -> int:
    from ..train import load_config, train
    from ..train.loop import run_directory

    with usage_errors(*BAD_INPUT):
        config = load_config(args.config, args.overrides)
        checks.writable(run_directory(config), "checkpoint_path", directory=True)
        train(config, resume=args.resume, profile_steps=args.profile_steps)
    return 0
