"""Helpers of the training and evaluation tests: tiny datasets in the official on-disk format (written
here, so that these tests do not depend on the dataset builders), ARC grid encoding."""

import json
import os

import numpy as np
from helpers import run_cli  # noqa: F401  (the train and eval tests take it from here)
from trm_fast.data.dihedral import dihedral


def write_split(directory, inputs, labels, puzzle_ids, puzzle_sizes, group_sizes, *, vocab_size, num_ids,
                set_name="all", ignore_label_id=0):
    """One split: examples (inputs, labels), puzzles of `puzzle_sizes` examples, groups of `group_sizes` puzzles."""
    os.makedirs(directory, exist_ok=True)
    arrays = {
        "inputs": np.asarray(inputs), "labels": np.asarray(labels),
        "puzzle_identifiers": np.asarray(puzzle_ids, dtype=np.int32),
        "puzzle_indices": np.concatenate([[0], np.cumsum(puzzle_sizes)]).astype(np.int32),
        "group_indices": np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int32),
    }
    for key, arr in arrays.items():
        np.save(os.path.join(directory, f"{set_name}__{key}.npy"), arr)
    meta = dict(pad_id=0, ignore_label_id=ignore_label_id, blank_identifier_id=0, vocab_size=vocab_size,
                seq_len=int(arrays["inputs"].shape[1]), num_puzzle_identifiers=num_ids,
                total_groups=len(group_sizes), mean_puzzle_examples=float(np.mean(puzzle_sizes)),
                total_puzzles=len(puzzle_sizes), sets=[set_name])
    with open(os.path.join(directory, "dataset.json"), "w") as f:
        json.dump(meta, f)


def write_reverse_dataset(root, *, train_groups=32, test_groups=8, puzzles_per_group=2, examples_per_puzzle=1,
                          seq_len=8, vocab_size=6, seed=0):
    """Learn to reverse a sequence: tokens 1..vocab_size-1 (0 is padding); every puzzle its own identifier."""
    rng = np.random.default_rng(seed)
    total_puzzles = (train_groups + test_groups) * puzzles_per_group
    next_id = 1
    for split, groups in (("train", train_groups), ("test", test_groups)):
        n = groups * puzzles_per_group * examples_per_puzzle
        inputs = rng.integers(1, vocab_size, (n, seq_len), dtype=np.uint8)
        ids = np.arange(next_id, next_id + groups * puzzles_per_group)
        next_id += ids.size
        write_split(os.path.join(root, split), inputs, inputs[:, ::-1], ids, [examples_per_puzzle] * ids.size,
                    [puzzles_per_group] * groups, vocab_size=vocab_size, num_ids=total_puzzles + 1)
    with open(os.path.join(root, "identifiers.json"), "w") as f:
        json.dump(["<blank>"] + [f"p{i}" for i in range(1, total_puzzles + 1)], f)
    return str(root)


def tiny_overrides(data, run_dir, *extra):
    """Overrides that train the shipped tiny config on `data` into `run_dir`."""
    return [f"data_paths=[{data}]", f"checkpoint_path={run_dir}", *extra]


def encode(grid, top=0, left=0):
    """A 30 x 30 token grid as the ARC builder writes it: colours + 2, an EOS (1) row and column, pad 0."""
    grid = np.asarray(grid)
    out = np.zeros((30, 30), np.int32)
    r, c = grid.shape
    out[top:top + r, left:left + c] = grid + 2
    if top + r < 30:
        out[top + r, left:left + c] = 1
    if left + c < 30:
        out[top:top + r, left + c] = 1
    return out.ravel()


def augment(grid, k, perm):
    """The builder's augmentation: recolour with perm (perm[0] == 0), then dihedral transform k."""
    return dihedral(np.asarray(perm, dtype=np.uint8)[np.asarray(grid)], k)


def write_arc_dataset(root, splits=("test",)):
    """Two ARC test puzzles, each as itself and one augmented copy: 'same' (answer = input) and 'other'.
    Returns (directory, {name: (input grid, output grid)})."""
    grids = {"same": ([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 6]]), "other": ([[7, 0], [0, 7]], [[1]])}
    augs = {"same": (1, [0, 2, 1, 3, 4, 5, 6, 7, 8, 9]), "other": (5, [0, 9, 8, 7, 6, 5, 4, 3, 2, 1])}
    names, inputs, labels = ["<blank>"], [], []
    for name, (inp, out) in grids.items():
        k, perm = augs[name]
        for tag, grid_in, grid_out in ((name, inp, out), (f"{name}|||t{k}|||{''.join(map(str, perm))}",
                                                          augment(inp, k, perm), augment(out, k, perm))):
            names.append(tag)
            inputs.append(encode(grid_in))
            labels.append(encode(grid_out))
    for split in splits:
        write_split(os.path.join(root, split), np.array(inputs, np.uint8), np.array(labels, np.uint8), [1, 2, 3, 4],
                    [1] * 4, [2, 2], vocab_size=12, num_ids=len(names))
    with open(os.path.join(root, "identifiers.json"), "w") as f:
        json.dump(names, f)
    with open(os.path.join(root, "test_puzzles.json"), "w") as f:
        json.dump({n: {"train": [], "test": [{"input": i, "output": o}]} for n, (i, o) in grids.items()}, f)
    return str(root), grids
