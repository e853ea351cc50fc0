"""Maze-Hard: import the public CSV or generate mazes, augment them, write the official format.

A maze is a square grid of characters, row by row: '#' wall, ' ' open, 'S' start, 'G' goal, and
in the answer 'o' on the cells of the shortest path between S and G. On disk a cell is its
character's index in "# SGo" plus one (wall 1, open 2, start 3, goal 4, path 5; 0 is padding and
never occurs); vocab 6, sequence length n * n (900 for Maze-Hard's 30x30).

Augmentation (training split only, `aug=True`) stores all 8 symmetries of every maze (see
`dihedral`), the identity first, as the 8 puzzles of one group.
"""

from array import array
from functools import partial

import numpy as np
from tqdm import tqdm

from . import maze_generator
from .csv_rows import read_puzzle_csv
from .dihedral import dihedral
from .errors import DatasetInputError
from .format import BLANK_IDENTIFIER, write_json, write_single_example_split
from .output import staged_output
from .parallel import draw_items

CHARSET = "# SGo"
VOCAB_SIZE = len(CHARSET) + 1
WALL, OPEN, START, GOAL, PATH = range(1, 6)
_TOKEN = np.zeros(256, np.uint8)  # byte -> token; 0 marks a character outside CHARSET
_TOKEN[np.frombuffer(CHARSET.encode(), np.uint8)] = np.arange(1, VOCAB_SIZE)


def read_maze_csv(path):
    """`(questions, answers)` token arrays (N, n * n) from a Maze-Hard CSV.

    Every grid must be square and of the first row's size, use only "# SGo", and the answer must
    keep the question's walls; otherwise DatasetInputError names the file and line.
    """
    questions, answers, lines, size = bytearray(), bytearray(), array("q"), None  # lines: CSV line of each row
    for line, _source, question, answer, _rating in read_puzzle_csv(path):
        if size is None:
            size = int(round(len(question) ** 0.5))
            if size == 0 or size * size != len(question):
                raise DatasetInputError(f"{path}:{line}: question has {len(question)} cells, not a square grid")
        for name, cells in (("question", question), ("answer", answer)):
            if len(cells) != size * size or not cells.isascii():
                raise DatasetInputError(f"{path}:{line}: {name} must be {size * size} characters "
                                        f"({size}x{size}, as on the first row), got {len(cells)}")
        questions += question.encode()
        answers += answer.encode()
        lines.append(line)
    if size is None:
        return np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8)
    q = _TOKEN[np.frombuffer(bytes(questions), np.uint8)].reshape(-1, size * size)
    a = _TOKEN[np.frombuffer(bytes(answers), np.uint8)].reshape(-1, size * size)
    for name, tokens in (("question", q), ("answer", a)):
        bad = (tokens == 0).any(axis=1)
        if bad.any():
            raise DatasetInputError(f"{path}:{lines[np.argmax(bad)]}: {name} has a character outside {CHARSET!r}")
    bad = ((q == WALL) != (a == WALL)).any(axis=1)
    if bad.any():
        raise DatasetInputError(f"{path}:{lines[np.argmax(bad)]}: answer's walls differ from the question's")
    return q, a


def maze_tokens(open_cells: np.ndarray, start: tuple, goal: tuple, path: list):
    """Question and answer token grids of a maze whose shortest path is `path` (start to goal)."""
    question = np.where(open_cells, OPEN, WALL).astype(np.uint8)
    question[start], question[goal] = START, GOAL
    answer = question.copy()
    for cell in path[1:-1]:
        answer[cell] = PATH
    return question, answer


def _generate_one(size: int, min_path_length: int, rng: np.random.Generator):
    return maze_tokens(*maze_generator.generate(rng, size, min_path_length))


def generate_mazes(count: int, *, size: int = 30, min_path_length: int = 111, seed: int, stream: int = 0,
                   workers: int = 1):
    """`(questions, answers)` token arrays (count, size * size) of generated mazes (see `maze_generator`)."""
    longest = maze_generator.longest_path(size)
    if min_path_length > longest:
        raise DatasetInputError(f"--min-path-length {min_path_length}: no path that long fits a {size}x{size} maze "
                                f"(at most {longest} moves); lower it or raise --size")
    items = draw_items(partial(_generate_one, size, min_path_length), count, seed=seed, stream=stream,
                       workers=workers, desc="generating mazes")
    return (np.stack([q for q, _ in items]).reshape(count, -1), np.stack([a for _, a in items]).reshape(count, -1))


def _all_symmetries(tokens: np.ndarray) -> np.ndarray:
    """(N, L) -> (N * 8, L): each maze followed by its 7 other symmetries."""
    size = int(round(tokens.shape[1] ** 0.5))
    grids = tokens.reshape(-1, size, size)
    out = np.stack([np.stack([dihedral(g, tid) for tid in range(8)]) for g in tqdm(grids, desc="augmenting",
                                                                                    unit=" mazes", leave=False)])
    return out.reshape(-1, size * size)


def write_maze_dataset(out, train, test, *, aug: bool = False, subsample=None, seed: int = 42,
                       force: bool = False) -> dict:
    """Write `out/{train,test}` from `(questions, answers)` token arrays; returns each split's metadata.

    The training split is first subsampled to `subsample` mazes (when it has more), then, with
    `aug`, every maze is stored in its 8 symmetries; the test split is written as it is.
    """
    for name, (q, _) in (("training", train), ("test", test)):
        if len(q) == 0:
            raise DatasetInputError(f"the {name} split has no mazes")
    if train[0].shape[1] != test[0].shape[1]:
        raise DatasetInputError(f"training mazes have {train[0].shape[1]} cells but test mazes {test[0].shape[1]}")
    rng = np.random.RandomState(seed)  # draws as the official builder's after np.random.seed(seed)
    written = {}
    with staged_output(out, force) as stage:
        for split, (q, a) in (("train", train), ("test", test)):
            symmetries = split == "train" and aug
            if split == "train" and subsample is not None and subsample < len(q):
                keep = rng.choice(len(q), size=subsample, replace=False)
                q, a = q[keep], a[keep]
            if symmetries:
                q, a = _all_symmetries(q), _all_symmetries(a)
            written[split] = write_single_example_split(stage / split, q, a, 8 if symmetries else 1, VOCAB_SIZE)
        write_json(stage / "identifiers.json", [BLANK_IDENTIFIER])
    return written
