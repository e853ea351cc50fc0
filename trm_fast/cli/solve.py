"""`trm-fast solve PUZZLE... [--checkpoint CKPT]`: solve Sudoku puzzles and print each grid, with the
Sudoku solver shipped in the package unless a checkpoint is given.

A PUZZLE is an 81-character string (row by row, '0' or '.' for a blank), a text file with one such puzzle
per line (blank lines and lines starting with '#' are skipped), '-' for the same on standard input, or a
Sudoku dataset directory in the official format; with no PUZZLE, standard input is read. A malformed
puzzle gets one line naming it and its line, and the others are still solved (the exit status is then 1).
"""

import argparse
import json
import os
import sys

from . import BAD_INPUT, UsageError, checks, usage_errors


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("puzzles", nargs="*", metavar="PUZZLE",
                        help="81 characters (digits, '0' or '.' for a blank), a text file of them, '-' for stdin, "
                             "or a Sudoku dataset directory (default: stdin)")
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help="a trm_fast step_N.pt, a model file (.safetensors), or an official checkpoint (with "
                             "--config or all_config.yaml); default: the solver shipped with trm_fast")
    parser.add_argument("--config", metavar="YAML", help="config with the arch of an official checkpoint")
    parser.add_argument("--halting", choices=("q", "all"), default="q",
                        help="q: stop each puzzle when the model says it is done (default); all: always run "
                             "halt_max_steps steps, as the official evaluation does")
    parser.add_argument("--halt-threshold", type=checks.finite_float, metavar="T",
                        help="the model says halt where Q-halt exceeds T (default: the model file's, tuned on "
                             "training puzzles; 0, as in training, for other checkpoints)")
    parser.add_argument("--split", default="test", help="split of a dataset directory (default: test)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="puzzles solved at once (default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of grids")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights even where EMA weights exist")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    compile_ = parser.add_mutually_exclusive_group()
    compile_.add_argument("--compile", dest="compile", action="store_true", default=None,
                          help="compile the model's step and replay CUDA graphs (default on a GPU from 20,000 "
                               "puzzles: compiling takes about half a minute)")
    compile_.add_argument("--no-compile", dest="compile", action="store_false")


def _lines(name: str, stream):
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield f"{name}:{number}", text


def read_sources(items, stdin):
    """([(source, text) of each puzzle], [dataset directories]) from the PUZZLE arguments."""
    puzzles, datasets = [], []
    for k, item in enumerate(items or ["-"], start=1):
        if item == "-":
            puzzles += _lines("stdin", stdin)
        elif os.path.isdir(item):
            datasets.append(item)
        elif os.path.isfile(item):
            with open(item, encoding="utf-8", errors="replace") as f:
                puzzles += _lines(item, f)
        else:
            puzzles.append((f"argument {k}", item))
    return puzzles, datasets


def _report(answer) -> str:
    """The answer's first line, then the puzzle and the model's grid side by side."""
    from ..data.sudoku import format_grid

    puzzle, solution = ([int(c) if c.isdigit() else 0 for c in text] for text in (answer.puzzle, answer.solution))
    grids = "\n".join(f"{p:<11}    {s}".rstrip() for p, s in zip(format_grid(puzzle).split("\n"),
                                                              format_grid(solution).split("\n")))
    verdict = "a valid solution" if answer.valid else "NOT a valid solution"
    if answer.exact is not None:
        verdict += ", equal to the label" if answer.exact else ", differs from the label"
    how = "the model halted on its own" if answer.halted else "no halt from the model"
    return f"{answer.source}: {answer.steps} steps ({how}), {verdict}\n{grids}\n"


def run(args) -> int:
    from ..evaluate.model_file import SUDOKU_SOLVER
    from ..evaluate.solve import solve_dataset, solve_puzzles

    checkpoint = args.checkpoint or SUDOKU_SOLVER
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    options = dict(halting=args.halting, batch_size=args.batch_size, device=str(checks.device(args.device)),
                   config_path=args.config, use_ema=not args.no_ema, compile=args.compile,
                   halt_threshold=args.halt_threshold)
    with usage_errors(*BAD_INPUT):  # a bad checkpoint, config, dataset or puzzle file: the message names it
        puzzles, datasets = read_sources(args.puzzles, sys.stdin)
        if not puzzles and not datasets:
            raise UsageError("no puzzle given (arguments, a file, or lines on stdin)")
        answers, rejected = solve_puzzles(checkpoint, puzzles, **options) if puzzles else ([], [])
        for directory in datasets:
            answers += solve_dataset(checkpoint, directory, split=args.split, **options)
    for source, why in rejected:
        print(f"trm-fast solve: error: {source}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": os.path.abspath(checkpoint), "halting": args.halting,
                          "answers": [a.to_dict() for a in answers],
                          "rejected": [{"source": s, "error": why} for s, why in rejected]}, indent=1))
    else:
        for answer in answers:
            print(_report(answer))
        if len(answers) > 1:
            valid = sum(a.valid for a in answers)
            mean = sum(a.steps for a in answers) / len(answers)
            print(f"{len(answers)} puzzles: {valid} valid solutions, {mean:.2f} steps on average"
                  + (f", {len(rejected)} rejected" if rejected else ""))
    return 1 if rejected else 0
