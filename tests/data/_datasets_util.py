"""Shared data and checks of the dataset builder tests (imported by name: tests/data/conftest.py puts this
directory on sys.path; the name is unique so that it cannot clash with another test directory's helpers)."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np

# Five generated Sudokus (question, answer, solver rating): three for train.csv, two for test.csv.
SUDOKU_ROWS = [
    ("7.....5.....84..264..96......7.3..8...4.8.1...29....4..........9.6...8...8.1....2",
     "768312594193845726452967318517436289634289157829751643271698435946523871385174962", 14),
    ("..6.....8...14.26.....5...7......42.52..8.7.....9.5...6.9.3.....1.....3.7....4.8.",
     "146792358857143269293658147968317425521486793374925816689231574415879632732564981", 39),
    ("..4.7...9.....5.3...6.9.4......2..1..475.8.....29....54....35863..7.9............",
     "854376129921485637736192458593627814147538962682941375479213586368759241215864793", 32),
    (".6....19..149...67.8.7............4.83.....1...2.....9..1.3..76....1...24...82...",
     "267345198314928567985761324159876243836294715742153689521439876698517432473682951", 45),
    ("...2.5..16....1.7...5.89...896...3........7....46.......8..7.14..9......7..53.8..",
     "937265481682341975415789263896174352153892746274653198368927514529418637741536829", 5),
]
# Five generated 7x7 mazes (question, answer, rating): three for train.csv, two for test.csv.
MAZE_ROWS = [
    ("########     ####S# ##   # ## ######    G########", "########     ####S# ##ooo# ##o######ooooG########", 0),
    ("#     #### # ##S  #G## # #### #   ## ### ##     #", "#  ooo####o#o##Soo#G## # #### #   ## ### ##     #", 0),
    ("#######       ##S# #  # # #  ### #G     # #######", "#######  ooooo##S# #o # # #o ### #G     # #######", 0),
    ("#    G## # #### # # ## ### ## #   ##S# ####     #", "#ooooG##o# ####o# # ##o### ##o#   ##S# ####     #", 0),
    ("#     ## ### ## # # ## # # ##   #G#### # ##S  # #", "#ooooo##o###o##o# #o##o# #o##ooo#G####o# ##Soo# #", 0),
]
METADATA_KEYS = ["pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                 "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "total_puzzles", "sets"]


def write_csv(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "question", "answer", "rating"])
        for question, answer, rating in rows:
            writer.writerow(["fixture", question, answer, rating])
    return path


def arc_task(seed: int, shape=(3, 4), n_train=2, n_test=1):
    """A small ARC task: random grids, each output the input flipped left-right."""
    rng = np.random.default_rng(seed)

    def pair():
        grid = rng.integers(0, 10, shape)
        return {"input": grid.tolist(), "output": grid[:, ::-1].tolist()}
    return {"train": [pair() for _ in range(n_train)], "test": [pair() for _ in range(n_test)]}


def dataset_digest(out: Path) -> dict:
    """A digest per file: JSON bytes, or an array's shape and values (whatever its dtype)."""
    digests = {}
    for path in sorted(Path(out).rglob("*")):
        if path.is_file():
            if path.suffix == ".npy":
                array = np.load(path)
                data = str(array.shape).encode() + np.asarray(array, np.int64).tobytes()
            else:
                data = path.read_bytes()
            digests[path.relative_to(out).as_posix()] = hashlib.sha256(data).hexdigest()[:16]
    return digests


def check_split(split_dir: Path, vocab_size: int, seq_len: int, single_example: bool) -> dict:
    """Everything the official reader relies on; returns the split's arrays and metadata."""
    meta = json.loads((split_dir / "dataset.json").read_text())
    assert list(meta) == METADATA_KEYS
    assert (meta["pad_id"], meta["ignore_label_id"], meta["blank_identifier_id"], meta["sets"]) == (0, 0, 0, ["all"])
    assert (meta["vocab_size"], meta["seq_len"]) == (vocab_size, seq_len)
    assert isinstance(meta["mean_puzzle_examples"], float)
    a = {f: np.load(split_dir / f"all__{f}.npy") for f in
         ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")}
    assert a["inputs"].dtype == a["labels"].dtype == np.uint8
    assert all(a[f].dtype == np.int32 for f in ("puzzle_identifiers", "puzzle_indices", "group_indices"))
    examples, puzzles, groups = len(a["inputs"]), len(a["puzzle_identifiers"]), len(a["group_indices"]) - 1
    assert a["inputs"].shape == a["labels"].shape == (examples, seq_len)
    assert a["inputs"].max() < vocab_size and a["labels"].max() < vocab_size
    for field, last in (("puzzle_indices", examples), ("group_indices", puzzles)):
        assert a[field][0] == 0 and a[field][-1] == last and (np.diff(a[field]) > 0).all()
    assert len(a["puzzle_indices"]) == puzzles + 1
    assert ((a["puzzle_identifiers"] >= 0) & (a["puzzle_identifiers"] < meta["num_puzzle_identifiers"])).all()
    assert meta["total_groups"] == groups
    if single_example:  # Sudoku and Maze: one example per puzzle, metadata as the official builders write it
        assert examples == puzzles and meta["total_puzzles"] == groups and meta["mean_puzzle_examples"] == 1.0
        assert meta["num_puzzle_identifiers"] == 1
    else:
        assert meta["total_puzzles"] == puzzles and meta["mean_puzzle_examples"] == examples / puzzles
    return dict(meta=meta, **a)


def check_dataset(out, vocab_size: int, seq_len: int, single_example: bool = True) -> dict:
    """Check both splits and identifiers.json of a built dataset; returns {"train": ..., "test": ...}."""
    out = Path(out)
    identifiers = json.loads((out / "identifiers.json").read_text())
    splits = {s: check_split(out / s, vocab_size, seq_len, single_example) for s in ("train", "test")}
    assert identifiers[0] == "<blank>"
    assert len(identifiers) == splits["train"]["meta"]["num_puzzle_identifiers"]
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no leftovers
    return splits
