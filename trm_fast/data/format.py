"""Writing the official on-disk format (described in full in `trm_fast.data`).

One split is a directory holding `dataset.json` and five `.npy` arrays per set. The arrays are
written as `np.save` writes them; token arrays that may not fit in memory (ARC with 1000
augmentations is several GB) are filled in place through `open_token_array`.
"""

import json
from pathlib import Path

import numpy as np

from ..disk import check_free_space

SET_NAME = "all"  # every official builder writes a single set with this name
TOKEN_DTYPE = np.uint8  # every vocabulary has at most 12 tokens
INDEX_DTYPE = np.int32
PAD_ID = 0
BLANK_IDENTIFIER = "<blank>"  # the name of puzzle identifier 0 in identifiers.json
# The label the model and the loss skip: a reader maps the split's `ignore_label_id` to it in every batch.
IGNORE_LABEL_ID = -100


def metadata(*, vocab_size: int, seq_len: int, num_puzzle_identifiers: int, total_groups: int,
             mean_puzzle_examples: float, total_puzzles: int) -> dict:
    """The fields of `dataset.json`, in the order the official builders write them.

    Label 0 (padding) is the ignored label and identifier 0 the blank puzzle, as in every official set.
    """
    return dict(pad_id=PAD_ID, ignore_label_id=PAD_ID, blank_identifier_id=0, vocab_size=vocab_size,
                seq_len=seq_len, num_puzzle_identifiers=num_puzzle_identifiers, total_groups=total_groups,
                mean_puzzle_examples=float(mean_puzzle_examples), total_puzzles=total_puzzles, sets=[SET_NAME])


def array_path(split_dir: Path, field: str) -> Path:
    return Path(split_dir) / f"{SET_NAME}__{field}.npy"


class _Stream:
    """A file that numpy writes through Python's `write`, which raises on a full disk: numpy's own path for
    real files (tofile) drops that error for an array small enough to sit in its buffer, leaving a
    truncated file behind."""

    def __init__(self, f):
        self.write = f.write


def _save(path: Path, values: np.ndarray) -> None:
    """np.save(path, values), failing on a full disk."""
    with open(path, "wb") as f:
        np.save(_Stream(f), values)


def write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)


def open_token_array(split_dir: Path, field: str, rows: int, seq_len: int) -> np.memmap:
    """A (rows, seq_len) uint8 `.npy` file for `inputs` or `labels`, mapped for writing in place. The free
    space is checked first: a mapped page that finds the disk full kills the process (SIGBUS)."""
    Path(split_dir).mkdir(parents=True, exist_ok=True)
    check_free_space(array_path(split_dir, field), rows * seq_len * np.dtype(TOKEN_DTYPE).itemsize, "a token array")
    return np.lib.format.open_memmap(array_path(split_dir, field), mode="w+", dtype=TOKEN_DTYPE,
                                     shape=(rows, seq_len))


def write_indices(split_dir: Path, puzzle_identifiers, puzzle_indices, group_indices) -> None:
    """The three int32 index arrays of a split (their meaning is in the `trm_fast.data` docstring)."""
    Path(split_dir).mkdir(parents=True, exist_ok=True)
    for field, values in (("puzzle_identifiers", puzzle_identifiers), ("puzzle_indices", puzzle_indices),
                          ("group_indices", group_indices)):
        _save(array_path(split_dir, field), np.asarray(values, dtype=INDEX_DTYPE))


def write_single_example_split(split_dir: Path, inputs: np.ndarray, labels: np.ndarray, group_size: int,
                               vocab_size: int) -> dict:
    """Write a Sudoku or Maze split, where every puzzle is one example with identifier 0.

    `inputs` and `labels` are (P, seq_len) token arrays in which each run of `group_size` rows is one
    source puzzle followed by its augmentations: one group. As the official builders do, the
    metadata counts groups as `total_puzzles` and says one example per puzzle. Returns the metadata.
    """
    num_puzzles, seq_len = inputs.shape
    num_groups = num_puzzles // group_size
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    _save(array_path(split_dir, "inputs"), inputs.astype(TOKEN_DTYPE, copy=False))
    _save(array_path(split_dir, "labels"), labels.astype(TOKEN_DTYPE, copy=False))
    write_indices(split_dir, np.zeros(num_puzzles), np.arange(num_puzzles + 1),
                  np.arange(0, num_puzzles + 1, group_size))
    meta = metadata(vocab_size=vocab_size, seq_len=seq_len, num_puzzle_identifiers=1, total_groups=num_groups,
                    mean_puzzle_examples=1, total_puzzles=num_groups)
    write_json(split_dir / "dataset.json", meta)
    return meta
