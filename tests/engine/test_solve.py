"""`trm-fast solve` on a model trained in the test: grids, steps, halting, JSON, and bad puzzles named."""

import json

import pytest
import torch
import trm_fast
import yaml
from helpers import run_cli
from trm_fast.data import generate_sudokus, write_sudoku_dataset
from trm_fast.train import load_config, train

PUZZLE = "000000010400000000020000000000050407008000300001090000300400200050100000000806000"


def run_solve(*args, stdin=None):
    return run_cli("solve", *args, "--device", "cpu", stdin=stdin)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny TRM trained for a few steps on generated Sudokus: (checkpoint, dataset directory)."""
    root = tmp_path_factory.mktemp("solve")
    train_set, test_set = (generate_sudokus(n, min_rating=0, seed=0, stream=s)[:2] for s, n in ((0, 32), (1, 6)))
    write_sudoku_dataset(root / "sudoku", train_set, test_set)
    run_dir = train(load_config("tiny", [f"data_paths=[{root / 'sudoku'}]", f"checkpoint_path={root / 'run'}",
                                         "epochs=2", "eval_interval=null"]))
    return f"{run_dir}/step_4.pt", root / "sudoku"


def test_puzzles_from_arguments_files_and_stdin(trained, tmp_path):
    ckpt, _ = trained
    listing = tmp_path / "puzzles.txt"
    listing.write_text(f"# two puzzles\n{PUZZLE}\n\n{PUZZLE.replace('0', '.')}\n")
    proc = run_solve(PUZZLE, listing, "-", "--checkpoint", ckpt, stdin=PUZZLE + "\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for source in ("argument 1:", f"{listing}:2:", f"{listing}:4:", "stdin:1:"):
        assert source in out
    assert "steps (" in out and "4 puzzles:" in out
    grid = out.split("argument 1:")[1].splitlines()[1:12]  # the puzzle and the answer side by side
    assert len(grid) == 11 and grid[3] == "" and all(len(r) == 26 for r in grid if r)
    assert grid[0].startswith("... ... .1.    ") and grid[1].startswith("4.. ... ...    ")

    data = json.loads(run_solve(PUZZLE, "--checkpoint", ckpt, "--json", "--halting", "all").stdout)
    (answer,) = data["answers"]
    assert answer["steps"] == 4 and data["halting"] == "all" and data["rejected"] == []
    assert len(answer["solution"]) == 81 and answer["puzzle"] == PUZZLE.replace("0", ".")
    assert answer["solution"][7] == "1" or not answer["valid"]  # a valid answer keeps the clues


def test_a_dataset_directory_is_checked_against_its_labels(trained):
    ckpt, data = trained
    data = json.loads(run_solve(data, "--checkpoint", ckpt, "--json").stdout)
    assert len(data["answers"]) == 6 and all("exact" in a for a in data["answers"])
    assert all(1 <= a["steps"] <= 4 for a in data["answers"])


def test_bad_puzzles_are_named_and_the_others_solved(trained, tmp_path):
    ckpt, _ = trained
    listing = tmp_path / "bad.txt"
    listing.write_text(f"{PUZZLE}\n{PUZZLE[:80]}\n{'x' + PUZZLE[1:]}\n{'11' + PUZZLE[2:]}\n")
    proc = run_solve(listing, "--checkpoint", ckpt, "--json")
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert errors == [
        f"trm-fast solve: error: {listing}:2: a Sudoku has 81 cells, got 80 characters: '{PUZZLE[:80]}'",
        f"trm-fast solve: error: {listing}:3: cell 1 is 'x'; cells are the digits 1-9, and '0' or '.' for a blank",
        f"trm-fast solve: error: {listing}:4: contradictory clues: 1 appears twice in row 1"]
    assert [a["source"] for a in json.loads(proc.stdout)["answers"]] == [f"{listing}:1"]


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "nope.pt", PUZZLE], "checkpoint not found: nope.pt"),
    (["--batch-size", "0", PUZZLE], "--batch-size must be >= 1, got 0"),
])
def test_bad_arguments(trained, args, message):
    ckpt, _ = trained
    args = args if "--checkpoint" in args else ["--checkpoint", ckpt, *args]
    proc = run_solve(*args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_model_of_other_data_is_not_taken_for_a_sudoku_solver(tmp_path):
    arch = yaml.safe_load(open(trm_fast.train.config.resolve_config_path("tiny")))["arch"]
    cfg = {k: v for k, v in arch.items() if k not in ("name", "loss")}
    model = trm_fast.TRM(dict(cfg, batch_size=1, seq_len=8, vocab_size=6, num_puzzle_identifiers=3))
    torch.save({"_orig_mod.model." + k: v for k, v in model.state_dict().items()}, tmp_path / "step_1")
    (tmp_path / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch}))
    proc = run_solve(PUZZLE, "--checkpoint", tmp_path / "step_1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "has vocab_size 6: this checkpoint was trained on another kind of data" in proc.stderr
