"""`trm-fast data ...`: each builder end to end, and errors as one line: exit status 2 for bad input, 1 for
a full disk, with nothing left behind."""

import pytest
from helpers import error_line, run_cli
from trm_fast.cli.main import main

from _datasets_util import check_dataset


def test_sudoku_generated(tmp_path, capsys):
    out = tmp_path / "sudoku"
    assert main(["data", "sudoku", "--out", str(out), "--generate", "2", "--test-size", "1", "--num-aug", "2",
                 "--min-difficulty", "5", "--workers", "1", "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    splits = check_dataset(out, vocab_size=11, seq_len=81)
    assert (len(splits["train"]["inputs"]), len(splits["test"]["inputs"])) == (6, 1)


def test_sudoku_generated_with_givens(tmp_path, capsys):
    out = tmp_path / "easy"
    assert main(["data", "sudoku", "--out", str(out), "--generate", "3", "--test-size", "2", "--givens", "40",
                 "--workers", "1"]) == 0
    assert "rated >= 0" in capsys.readouterr().out  # easier puzzles: no minimum rating unless asked
    splits = check_dataset(out, vocab_size=11, seq_len=81)
    for split in ("train", "test"):
        assert ((splits[split]["inputs"] > 1).sum(axis=1) == 40).all()  # token 1 is a blank


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
    (["sudoku", "--csv-dir", "{tmp}", "--givens", "30"], "--givens: only with --generate"),
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
    (["sudoku", "--out", "x", "--generate", "1", "--givens", "16"], "--givens: must be between 17 and 81"),
    (["arc", "--out", "x", "--num-aug", "-1"], "--num-aug: must be >= 0, got -1"),
])
def test_bad_arguments(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["data", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_out_is_refused_before_the_build(tmp_path, maze_csv_dir, where, capsys):
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "maze" if where == "file" else "/proc/trm-fast-maze"
    assert main(["data", "maze", "--out", str(out), "--csv-dir", str(maze_csv_dir)]) == 2
    assert f"--out {out}: " in error_line(capsys.readouterr().err, "data maze")


def test_a_maze_path_that_cannot_fit_is_refused_before_generating(tmp_path, capsys):
    assert main(["data", "maze", "--out", str(tmp_path / "m"), "--generate", "5", "--size", "4"]) == 2
    assert error_line(capsys.readouterr().err, "data maze").endswith(
        "--min-path-length 111: no path that long fits a 4x4 maze (at most 8 moves); lower it or raise --size")
    assert not list(tmp_path.iterdir())


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, maze_csv_dir):
    out = tmp_path / "new" / "maze"  # 24 mazes of 49 cells: the token arrays pass the limit
    proc = run_cli("data", "maze", "--out", out, "--csv-dir", maze_csv_dir, "--aug", file_size_limit=1000)
    assert proc.returncode == 1
    assert error_line(proc.stderr, "data maze") == \
        f"trm-fast data maze: error: cannot write {out}: the file is larger than the file-size limit (ulimit -f): " \
        "raise it or write elsewhere"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maze"]  # the CSV directory alone


def test_too_little_free_space_is_found_before_writing(tmp_path, arc_dirs, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    out = tmp_path / "arc"
    assert main(["data", "arc", "--out", str(out), "--sets", "none", "--json", str(arc_dirs["mine"]), "--json",
                 f"hidden={arc_dirs['held']}", "--test-sets", "hidden", "--num-aug", "2"]) == 1
    assert f"cannot write {out}: a token array needs " in error_line(capsys.readouterr().err, "data arc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held", "mine"]
