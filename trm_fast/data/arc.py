"""ARC: augment tasks and write the official format, with what the evaluator needs to undo it.

**Tokens.** Every example is a 30x30 canvas, row by row (sequence length 900): token 0 is padding,
1 is EOS, 2..11 are the colours 0..9 (vocab 12). The grid sits at offset (r, c) of the canvas; the
row just below it and the column just right of it (over the grid's width and height, not the
corner) are EOS where they fall inside the canvas, so the grid's size can be read back. Input and
output of one example share the offset.

**Puzzles and groups.** A task's original and each of its augmentations are puzzles of one group;
a puzzle's examples are the task's pairs, in the task's order ("train" and "test" lists in the
order the JSON lists them). Tasks of a *test subset* put their "train" pairs in the training split
and their "test" pairs in the test split (one group there too); other tasks put all pairs in the
training split.

**Augmentation.** An augmented puzzle applies a colour permutation that keeps 0 (black) and then
a symmetry `tid` (see `dihedral`) to every grid. Its name is `<task id>|||t<tid>|||<colours>`,
where `<colours>` lists the new colour of 0, 1, ..., 9 (e.g. `007bbfb7|||t3|||0527316489`).
Draws that repeat the original or an earlier augmentation (same set of example grids) are
dropped; at most 5 * num_aug draws are made per task. In the training split every example but one
(picked at random) of each puzzle is also moved to a random offset; test examples stay at (0, 0).

**Identifiers.** Puzzle identifier i >= 1 is the i-th distinct puzzle name in training-split
order; 0 is `<blank>`. `identifiers.json` lists the names by identifier, `test_puzzles.json` maps
each test-subset task id to its task (outputs included) for the evaluator.

**Randomness.** One `np.random.RandomState(seed)` draws, in order: the shuffle of each subset's
tasks, the augmentations of each task, then for each puzzle of the training split and then of the
test split the untranslated example and the offsets. This is the official builder's order, so a
build from the same tasks and seed is identical to it (when the first subset is not a test subset;
the official builder then orders its splits by Python's string hashing).
"""

import hashlib
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .dihedral import dihedral, inverse_dihedral
from .errors import DatasetInputError
from .format import BLANK_IDENTIFIER, metadata, open_token_array, write_indices, write_json
from .output import staged_output

MAX_GRID = 30
SEQ_LEN = MAX_GRID * MAX_GRID
VOCAB_SIZE = 12  # PAD, EOS, colours 0..9
PAD, EOS, COLOUR_0 = 0, 1, 2
NAME_SEPARATOR = "|||"
RETRIES_PER_AUGMENTATION = 5
_IDENTITY_COLOURS = np.arange(10, dtype=np.uint8)


def grid_hash(grid: np.ndarray) -> str:
    """The official hash of a uint8 grid: sha256 of its two sizes (one byte each), then its cells."""
    grid = np.asarray(grid, dtype=np.uint8)
    return hashlib.sha256(bytes(grid.shape) + grid.tobytes()).hexdigest()


def augmented_name(task_id: str, tid: int, colours) -> str:
    return f"{task_id}{NAME_SEPARATOR}t{tid}{NAME_SEPARATOR}{''.join(str(int(c)) for c in colours)}"


def parse_name(name: str):
    """`(task id, tid, colours)` of a puzzle name; an original task is `(name, 0, 0..9)`."""
    if NAME_SEPARATOR not in name:
        return name, 0, _IDENTITY_COLOURS
    task_id, transform, colours = (name.split(NAME_SEPARATOR) + ["", ""])[:3]
    if (len(transform) != 2 or transform[0] != "t" or transform[1] not in "01234567"
            or sorted(colours) != list("0123456789")):
        raise ValueError(f"puzzle name {name!r} is not <task id>{NAME_SEPARATOR}t<0-7>{NAME_SEPARATOR}<colours 0-9>")
    return task_id, int(transform[1]), np.array([int(c) for c in colours], np.uint8)


def undo_augmentation(name: str, grid: np.ndarray):
    """`(task id, grid)`: map a grid of the puzzle `name` back to the original task's frame."""
    task_id, tid, colours = parse_name(name)
    return task_id, np.argsort(colours).astype(np.uint8)[inverse_dihedral(np.asarray(grid), tid)]


class _Puzzle(NamedTuple):
    """One puzzle of a group: a name and the augmentation that makes its grids from the task's."""
    name: str
    tid: int = 0
    colours: np.ndarray = _IDENTITY_COLOURS

    def apply(self, grid: np.ndarray) -> np.ndarray:
        return dihedral(self.colours[grid], self.tid)


def _content(puzzle: _Puzzle, examples) -> tuple:
    """The puzzle's set of (input, output) grids, comparable across augmentations."""
    keys = []
    for inp, out in examples:
        inp, out = puzzle.apply(inp), puzzle.apply(out)
        keys.append((inp.shape, inp.tobytes(), out.shape, out.tobytes()))
    return tuple(sorted(keys))


def _augment(task_id: str, examples, num_aug: int, rng: np.random.RandomState):
    """The task's puzzles: the original, then up to `num_aug` distinct augmentations."""
    group = [_Puzzle(task_id)]
    if num_aug == 0:
        return group
    seen = {_content(group[0], examples)}
    for _ in range(RETRIES_PER_AUGMENTATION * num_aug):
        tid = int(rng.randint(0, 8))
        colours = np.concatenate([[0], rng.permutation(np.arange(1, 10, dtype=np.uint8))]).astype(np.uint8)
        puzzle = _Puzzle(augmented_name(task_id, tid, colours), tid, colours)
        content = _content(puzzle, examples)
        if content not in seen:
            seen.add(content)
            group.append(puzzle)
        if len(group) > num_aug:
            break
    return group


def _canvas(grid: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 900 tokens of `grid` placed at (row, col), with its EOS edge."""
    canvas = np.zeros((MAX_GRID, MAX_GRID), np.uint8)
    h, w = grid.shape
    canvas[row:row + h, col:col + w] = grid + COLOUR_0
    if row + h < MAX_GRID:
        canvas[row + h, col:col + w] = EOS
    if col + w < MAX_GRID:
        canvas[row:row + h, col + w] = EOS
    return canvas.reshape(-1)


def _write_split(split_dir, groups, identifiers: dict, translate: bool, rng: np.random.RandomState,
                 desc: str) -> dict:
    """Write one split from `[(examples, puzzles), ...]`, one group each; returns its metadata."""
    rows = sum(len(examples) * len(puzzles) for examples, puzzles in groups)
    inputs = open_token_array(split_dir, "inputs", rows, SEQ_LEN)
    labels = open_token_array(split_dir, "labels", rows, SEQ_LEN)
    puzzle_identifiers, puzzle_indices, group_indices = [], [0], [0]
    row = 0
    for examples, puzzles in tqdm(groups, desc=desc, unit=" tasks", leave=False):
        for puzzle in puzzles:
            untranslated = rng.randint(0, len(examples))
            for k, (inp, out) in enumerate(examples):
                inp, out = puzzle.apply(inp), puzzle.apply(out)
                r = c = 0
                if translate and k != untranslated:
                    r = rng.randint(0, MAX_GRID - max(inp.shape[0], out.shape[0]) + 1)
                    c = rng.randint(0, MAX_GRID - max(inp.shape[1], out.shape[1]) + 1)
                inputs[row], labels[row] = _canvas(inp, r, c), _canvas(out, r, c)
                row += 1
            puzzle_indices.append(row)
            puzzle_identifiers.append(identifiers[puzzle.name])
        group_indices.append(len(puzzle_identifiers))
    inputs.flush()
    labels.flush()
    del inputs, labels  # close the maps before the directory is renamed
    write_indices(split_dir, puzzle_identifiers, puzzle_indices, group_indices)
    meta = metadata(vocab_size=VOCAB_SIZE, seq_len=SEQ_LEN, num_puzzle_identifiers=len(identifiers) + 1,
                    total_groups=len(groups), mean_puzzle_examples=rows / len(puzzle_identifiers),
                    total_puzzles=len(puzzle_identifiers))
    write_json(split_dir / "dataset.json", meta)
    return meta


def _grids(pairs):
    return [(np.array(p["input"], np.uint8), np.array(p["output"], np.uint8)) for p in pairs]


def write_arc_dataset(out, subsets, test_subsets, *, num_aug: int = 1000, seed: int = 42,
                      force: bool = False) -> dict:
    """Write an ARC dataset from checked `[(subset name, {task id: task}), ...]` (see `arc_tasks`).

    The "test" pairs of the tasks of the subsets named in `test_subsets` form the test split.
    Returns the metadata of each split and `short`, the task ids that got fewer than `num_aug`
    distinct augmentations.
    """
    names = [name for name, _ in subsets]
    unknown = sorted(set(test_subsets) - set(names))
    if unknown:
        raise DatasetInputError(f"--test-sets: no subset named {', '.join(unknown)} (subsets: {', '.join(names)})")
    owner = {}
    for name, tasks in subsets:
        for task_id in tasks:
            if task_id in owner:
                raise DatasetInputError(f"task {task_id} is in both subset {owner[task_id]} and subset {name}; "
                                        "a task may appear once (ARC-AGI-2's training set holds ARC-AGI-1 tasks)")
            owner[task_id] = name
    rng = np.random.RandomState(seed)
    train_groups, test_groups, test_puzzles, short = [], [], {}, []
    for name, tasks in subsets:
        items = list(tasks.items())
        rng.shuffle(items)
        for task_id, task in tqdm(items, desc=f"augmenting {name}", unit=" tasks", leave=False):
            in_test = name in test_subsets
            train_examples, test_examples = [], []
            for kind in (k for k in task if k in ("train", "test")):
                (test_examples if in_test and kind == "test" else train_examples).extend(_grids(task[kind]))
            puzzles = _augment(task_id, train_examples + test_examples, num_aug, rng)
            if len(puzzles) <= num_aug:
                short.append(task_id)
            train_groups.append((train_examples, puzzles))
            if in_test:
                test_groups.append((test_examples, puzzles))
                test_puzzles[task_id] = task
    if not test_groups:
        raise DatasetInputError("no task goes to the test split: name at least one non-empty subset in --test-sets")
    identifiers = {}
    for _, puzzles in train_groups:
        for puzzle in puzzles:
            identifiers.setdefault(puzzle.name, len(identifiers) + 1)
    written = {"short": short}
    with staged_output(out, force) as stage:
        written["train"] = _write_split(stage / "train", train_groups, identifiers, True, rng, "writing train")
        written["test"] = _write_split(stage / "test", test_groups, identifiers, False, rng, "writing test")
        write_json(stage / "identifiers.json", [BLANK_IDENTIFIER, *identifiers])
        write_json(stage / "test_puzzles.json", test_puzzles)
    return written
