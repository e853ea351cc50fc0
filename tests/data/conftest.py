"""Fixtures for the dataset builder tests: tiny source files in tmp_path."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _datasets_util import MAZE_ROWS, SUDOKU_ROWS, arc_task, write_csv  # noqa: E402


@pytest.fixture
def sudoku_csv_dir(tmp_path):
    write_csv(tmp_path / "sudoku" / "train.csv", SUDOKU_ROWS[:3])
    write_csv(tmp_path / "sudoku" / "test.csv", SUDOKU_ROWS[3:])
    return tmp_path / "sudoku"


@pytest.fixture
def maze_csv_dir(tmp_path):
    write_csv(tmp_path / "maze" / "train.csv", MAZE_ROWS[:3])
    write_csv(tmp_path / "maze" / "test.csv", MAZE_ROWS[3:])
    return tmp_path / "maze"


@pytest.fixture
def arc_dirs(tmp_path):
    """Two subsets of two tasks each, as directories of one-task files: "mine" and "held"."""
    dirs = {}
    for name, seeds in (("mine", (1, 2)), ("held", (3, 4))):
        d = tmp_path / name
        d.mkdir()
        for seed in seeds:
            (d / f"task{seed}.json").write_text(json.dumps(arc_task(seed, shape=(2 + seed, 5 - seed % 2))))
        dirs[name] = d
    return dirs
