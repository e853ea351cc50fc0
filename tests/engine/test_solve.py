"""`trm-fast solve` on a model trained in the test: grids, steps, halting, JSON, and bad puzzles named."""

import json

import pytest
import torch
import trm_fast
import yaml
from helpers import run_cli
from trm_fast.data import generate_sudokus, write_sudoku_dataset
from trm_fast.evaluate import evaluate_checkpoint
from trm_fast.evaluate.model_file import read_model_file
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


def test_the_shipped_solver_solves_without_a_checkpoint():
    # Whether each answer is right is what the measured accuracy reports (README); here: every answer is a
    # full grid of digits 1-9 that keeps the puzzle's clues.
    questions, _, _ = generate_sudokus(3, min_rating=0, seed=7, stream=5, givens=32)
    puzzles = [PUZZLE] + ["".join(map(str, q)) for q in questions]
    proc = run_solve(*puzzles, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["checkpoint"].endswith("sudoku.safetensors") and len(data["answers"]) == 4
    for puzzle, answer in zip(puzzles, data["answers"]):
        assert len(answer["solution"]) == 81 and all(c in "123456789" for c in answer["solution"]), answer
        assert all(p in "0." or p == s for p, s in zip(puzzle, answer["solution"])), answer
        assert 1 <= answer["steps"] <= 16


def test_export_writes_a_model_file_every_command_reads(trained, tmp_path):
    ckpt, data = trained
    model_file = tmp_path / "model.safetensors"
    proc = run_cli("export", ckpt, model_file, "--dtype", "float32", "--halt-threshold", "2.5",
                   "--description", "tiny test model")
    assert proc.returncode == 0 and "(the EMA weights)" in proc.stdout, proc.stderr
    read = read_model_file(model_file)
    assert read.ema and read.halt_threshold == 2.5 and read.description == "tiny test model"
    from_ckpt = evaluate_checkpoint(ckpt, str(data), device="cpu", halting="q", halt_threshold=2.5)
    from_file = evaluate_checkpoint(str(model_file), str(data), device="cpu", halting="q")
    assert from_file["halt_threshold"] == 2.5  # the file's own threshold, unless told another
    assert from_file["sets"] == from_ckpt["sets"]  # float32 weights: the same model
    both = [json.loads(run_solve(data, "--checkpoint", c, "--json", "--halt-threshold", "2.5").stdout)["answers"]
            for c in (ckpt, model_file)]
    assert both[0] == both[1]
    assert run_cli("export", ckpt, tmp_path / "small.safetensors").returncode == 0  # bfloat16 by default
    assert (tmp_path / "small.safetensors").stat().st_size < 0.6 * model_file.stat().st_size


@pytest.mark.parametrize("args, message", [
    (["{ckpt}", "{tmp}/model.pt"], "OUT must end with .safetensors, got"),
    (["{ckpt}", "{tmp}/m.safetensors", "--halt-threshold", "nan"], "--halt-threshold: must be a finite number"),
    (["{tmp}/nope.pt", "{tmp}/m.safetensors"], "checkpoint not found"),
    (["{tmp}/plain.safetensors", "{tmp}/m.safetensors"], "is a safetensors file but not a trm_fast model"),
    (["{tmp}/junk.safetensors", "{tmp}/m.safetensors"], "is not a safetensors file"),
])
def test_bad_exports_are_named(trained, tmp_path, args, message):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file at all")
    proc = run_cli("export", *[a.format(ckpt=trained[0], tmp=tmp_path) for a in args])
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.safetensors").exists()
