"""`trm-fast data ...`: each builder end to end, and errors as one line with exit status 2."""

import pytest
from trm_fast.cli.main import main

from _datasets_util import check_dataset


def test_sudoku_generated(tmp_path, capsys):
    out = tmp_path / "sudoku"
    assert main(["data", "sudoku", "--out", str(out), "--generate", "2", "--test-size", "1", "--num-aug", "2",
                 "--min-difficulty", "5", "--workers", "1", "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    splits = check_dataset(out, vocab_size=11, seq_len=81)
    assert (len(splits["train"]["inputs"]), len(splits["test"]["inputs"])) == (6, 1)


def test_maze_csv(tmp_path, maze_csv_dir, capsys):
    out = tmp_path / "built"
    assert main(["data", "maze", "--out", str(out), "--csv-dir", str(maze_csv_dir), "--aug"]) == 0
    assert "train 3 groups, 24 puzzles, 24 examples; test 2 groups, 2 puzzles, 2 examples" in capsys.readouterr().out
    check_dataset(out, vocab_size=6, seq_len=49)


def test_arc_json_dirs(tmp_path, arc_dirs):
    out = tmp_path / "arc"
    args = ["data", "arc", "--out", str(out), "--sets", "none", "--json", str(arc_dirs["mine"]),
            "--json", f"hidden={arc_dirs['held']}", "--num-aug", "2"]
    assert main(args + ["--test-sets", "hidden"]) == 0
    splits = check_dataset(out, vocab_size=12, seq_len=900, single_example=False)
    assert splits["test"]["meta"]["total_groups"] == 2


@pytest.mark.parametrize("args, message", [
    (["sudoku", "--csv-dir", "{tmp}/nothing"], "nothing/train.csv: no such file"),
    (["sudoku", "--csv-dir", "{tmp}", "--test-size", "3"], "--test-size: only with --generate"),
    (["maze", "--generate", "1", "--out", "{tmp}"], "--out {tmp}: directory exists and is not empty"),
    (["arc", "--sets", "none"], "no tasks: choose --sets"),
    (["arc", "--sets", "arc-agi-9"], "--sets: unknown ARC set 'arc-agi-9'"),
    (["arc", "--sets", "none", "--json", "{tmp}/held"], "no task goes to the test split"),
])
def test_errors_are_one_line(tmp_path, arc_dirs, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    assert main(["data", *args, *out]) == 2
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after any progress bars
    assert last.startswith(f"trm-fast data {args[0]}: error: ") and message.format(tmp=tmp_path) in last
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["sudoku", "--out", "x", "--generate", "0"], "--generate: must be a positive integer, got 0"),
    (["sudoku", "--out", "x"], "one of the arguments --csv-dir --generate is required"),
    (["arc", "--out", "x", "--num-aug", "-1"], "--num-aug: must be >= 0, got -1"),
])
def test_bad_arguments(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["data", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
