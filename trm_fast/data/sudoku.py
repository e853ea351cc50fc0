"""Sudoku-Extreme: import the public CSV or generate puzzles, augment them, write the official format.

Puzzles are handled as (N, 81) uint8 arrays of digits, row by row, 0 for a blank. On disk a cell
is its digit + 1: token 1 is a blank, tokens 2..10 the digits 1..9, token 0 (padding) never
occurs; vocab 11, sequence length 81. Labels are the solved grids.

Augmentation (training split only) is the paper's: relabel the digits 1..9 by a random
permutation, shuffle the three bands and the rows inside each band, the same for stacks and
columns, and transpose with probability 1/2. Every augmented copy of a puzzle is another puzzle
of the source puzzle's group. The random draws come in the official builder's order from
`np.random.RandomState(seed)`, so a build equals the official one run after `np.random.seed(seed)`.
"""

from array import array
from functools import partial

import numpy as np
from tqdm import tqdm

from . import sudoku_solver
from .csv_rows import read_puzzle_csv
from .errors import DatasetInputError
from .format import BLANK_IDENTIFIER, write_json, write_single_example_split
from .output import staged_output
from .parallel import draw_items

SEQ_LEN = 81
VOCAB_SIZE = 11  # PAD + blank + 9 digits
_TRANSPOSE = np.arange(81).reshape(9, 9).T.reshape(-1)  # cell of the transposed grid -> cell of the grid


def invalid_pairs(questions: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Indices of the pairs whose answer is not a full Sudoku grid, or disagrees with a given."""
    bad = []
    for start in range(0, len(questions), 65536):  # chunks keep the sorted copies small
        q = questions[start:start + 65536].reshape(-1, 9, 9)
        a = answers[start:start + 65536].reshape(-1, 9, 9)
        boxes = a.reshape(-1, 3, 3, 3, 3).swapaxes(2, 3).reshape(-1, 9, 9)
        ok = ((q == 0) | (q == a)).all(axis=(1, 2))
        for units in (a, a.swapaxes(1, 2), boxes):
            ok &= (np.sort(units, axis=2) == np.arange(1, 10, dtype=a.dtype)).all(axis=(1, 2))
        bad.append(np.flatnonzero(~ok) + start)
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


_UNITS = np.concatenate([  # (27, 9) cell indices of the nine rows, nine columns and nine boxes
    np.arange(81).reshape(9, 9), np.arange(81).reshape(9, 9).T,
    np.arange(81).reshape(3, 3, 3, 3).swapaxes(1, 2).reshape(9, 9)])
_UNIT_NAMES = [f"row {i + 1}" for i in range(9)] + [f"column {i + 1}" for i in range(9)] + \
    [f"box {i + 1}" for i in range(9)]


def parse_puzzle(text: str) -> np.ndarray:
    """One puzzle written as 81 characters, row by row, '0' or '.' for a blank: (81,) uint8 digits.
    DatasetInputError saying what is wrong: the length, a character, or a clue given twice in a unit."""
    cells = text.strip()
    if len(cells) != SEQ_LEN:
        raise DatasetInputError(f"a Sudoku has {SEQ_LEN} cells, got {len(cells)} characters: {cells[:100]!r}")
    bad = next((i for i, c in enumerate(cells) if c not in ".0123456789"), None)
    if bad is not None:
        raise DatasetInputError(f"cell {bad + 1} is {cells[bad]!r}; cells are the digits 1-9, and '0' or '.' "
                                "for a blank")
    digits = np.frombuffer(cells.replace(".", "0").encode(), np.uint8) - ord("0")
    for name, unit in zip(_UNIT_NAMES, digits[_UNITS]):
        given = unit[unit > 0]
        if np.unique(given).size != given.size:
            twice = next(int(d) for d in given if (given == d).sum() > 1)
            raise DatasetInputError(f"contradictory clues: {twice} appears twice in {name}")
    return digits


def format_grid(digits) -> str:
    """Nine lines of a 9 x 9 grid, boxes apart, '.' for a blank."""
    rows = []
    for r in range(9):
        row = "".join(str(int(d)) if d else "." for d in digits[r * 9:(r + 1) * 9])
        rows.append(" ".join(row[c:c + 3] for c in (0, 3, 6)))
        if r in (2, 5):
            rows.append("")
    return "\n".join(rows)


def read_sudoku_csv(path, min_difficulty=None):
    """`(questions, answers)` from a Sudoku-Extreme CSV (question: '.' or '0' for a blank).

    Rows rated below `min_difficulty` are skipped. A cell that is not a digit, a row of the wrong
    length, a non-integer rating, or an answer that does not solve its question raises
    DatasetInputError naming the file and line.
    """
    questions, answers, lines = bytearray(), bytearray(), array("q")  # lines: CSV line of each row
    for line, _source, question, answer, rating in read_puzzle_csv(path):
        for name, cells in (("question", question), ("answer", answer)):
            if len(cells) != SEQ_LEN or not cells.isascii():
                raise DatasetInputError(f"{path}:{line}: {name} must be {SEQ_LEN} characters, got "
                                        f"{len(cells)}: {cells[:100]!r}")
        if min_difficulty is not None:
            try:
                rated = int(rating)
            except ValueError:
                raise DatasetInputError(f"{path}:{line}: rating {rating!r} is not an integer") from None
            if rated < min_difficulty:
                continue
        questions += question.replace(".", "0").encode()
        answers += answer.encode()
        lines.append(line)
    q = np.frombuffer(bytes(questions), np.uint8).reshape(-1, SEQ_LEN) - ord("0")
    a = np.frombuffer(bytes(answers), np.uint8).reshape(-1, SEQ_LEN) - ord("0")
    # bytes below '0' wrap around to large values, so one comparison catches every non-digit
    for name, bad_rows, allowed in (("question", (q > 9).any(axis=1), "'.0123456789'"),
                                    ("answer", ((a == 0) | (a > 9)).any(axis=1), "'123456789'")):
        if bad_rows.any():
            raise DatasetInputError(f"{path}:{lines[np.argmax(bad_rows)]}: {name} has a cell that is not one "
                                    f"of {allowed}")
    bad = invalid_pairs(q, a)
    if bad.size:
        raise DatasetInputError(f"{path}:{lines[bad[0]]}: answer is not a valid Sudoku solution of the question")
    return q, a


def _generate_one(min_rating: int, givens: int, rng: np.random.Generator):
    puzzle, solution, rating = sudoku_solver.generate(rng, min_rating, givens=givens)
    return np.array(puzzle, np.uint8), np.array(solution, np.uint8), rating


def generate_sudokus(count: int, *, min_rating: int, seed: int, stream: int = 0, workers: int = 1,
                     givens: int = 0):
    """`(questions, answers, ratings)` of `count` generated puzzles with one solution each, rated
    >= `min_rating`, minimal or with `givens` givens (see `sudoku_solver`). `stream` separates
    independent sets of one seed."""
    items = draw_items(partial(_generate_one, min_rating, givens), count, seed=seed, stream=stream, workers=workers,
                       desc="generating sudokus")
    questions = np.stack([q for q, _, _ in items]).reshape(-1, SEQ_LEN)
    answers = np.stack([a for _, a, _ in items]).reshape(-1, SEQ_LEN)
    return questions, answers, np.array([r for _, _, r in items], np.int64)


def _shuffle_plan(rng: np.random.RandomState):
    """One augmentation: `(digit_map, cells)` such that the new grid is `digit_map[grid[cells]]`."""
    digit_map = np.concatenate([[0], rng.permutation(np.arange(1, 10))])  # blank stays blank
    transpose = rng.rand() < 0.5
    rows = np.concatenate([band * 3 + rng.permutation(3) for band in rng.permutation(3)])
    cols = np.concatenate([stack * 3 + rng.permutation(3) for stack in rng.permutation(3)])
    cells = (rows[:, None] * 9 + cols[None, :]).reshape(-1)  # new (i, j) <- old (rows[i], cols[j])
    return digit_map, (_TRANSPOSE[cells] if transpose else cells)


def augment(questions: np.ndarray, answers: np.ndarray, num_aug: int, rng: np.random.RandomState):
    """Each puzzle followed by `num_aug` shuffled copies: two (N * (1 + num_aug), 81) arrays."""
    n = len(questions)
    out_q = np.empty((n, 1 + num_aug, SEQ_LEN), np.uint8)
    out_a = np.empty_like(out_q)
    out_q[:, 0], out_a[:, 0] = questions, answers
    for i in tqdm(range(n), desc="augmenting", unit=" puzzles", leave=False, disable=num_aug == 0):
        for k in range(1, 1 + num_aug):
            digit_map, cells = _shuffle_plan(rng)
            out_q[i, k] = digit_map[questions[i, cells]]
            out_a[i, k] = digit_map[answers[i, cells]]
    return out_q.reshape(-1, SEQ_LEN), out_a.reshape(-1, SEQ_LEN)


def write_sudoku_dataset(out, train, test, *, num_aug: int = 0, subsample=None, seed: int = 42,
                         force: bool = False) -> dict:
    """Write `out/{train,test}` from `(questions, answers)` digit arrays; returns each split's metadata.

    The training split is first subsampled to `subsample` puzzles (when it has more), then every
    puzzle gets `num_aug` augmented copies; the test split is written as it is. Every pair written
    must be a valid puzzle and solution (DatasetInputError otherwise).
    """
    for name, (q, _) in (("training", train), ("test", test)):
        if len(q) == 0:
            raise DatasetInputError(f"the {name} split has no puzzles")
    rng = np.random.RandomState(seed)
    written = {}
    with staged_output(out, force) as stage:
        for split, (q, a) in (("train", train), ("test", test)):
            aug = num_aug if split == "train" else 0
            if split == "train" and subsample is not None and subsample < len(q):
                keep = rng.choice(len(q), size=subsample, replace=False)
                q, a = q[keep], a[keep]
            q, a = augment(q, a, aug, rng)
            bad = invalid_pairs(q, a)  # every pair written is checked, augmented copies included
            if bad.size:
                raise DatasetInputError(f"{split} puzzle {bad[0]}: the answer is not a valid solution of the puzzle")
            written[split] = write_single_example_split(stage / split, q + 1, a + 1, 1 + aug, VOCAB_SIZE)
        write_json(stage / "identifiers.json", [BLANK_IDENTIFIER])
    return written
