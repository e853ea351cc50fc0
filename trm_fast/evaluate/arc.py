"""ARC scoring as the official evaluators/arc.py: undo each augmentation, vote, pass@K, submission.

Every test example of the ARC test split is one augmented copy of an original test input. For each
prediction (after all ACT steps):

  1. crop: the answer is the largest top-left rectangle of colour tokens (ids 2..11 = colours 0..9),
     scanning rows while the width can only shrink; the same crop recovers the input grid;
  2. undo the augmentation named in the puzzle's identifier, `name|||t{k}|||{perm}`: the inverse of
     dihedral transform k, then the inverse colour permutation;
  3. vote: predictions of the same original input are grouped by grid; each distinct grid scores
     (count, mean sigmoid(q_halt)); grids are ranked by count, then by mean confidence.

pass@K for a puzzle is the fraction of its test inputs whose true output is among the K best grids,
averaged over puzzles; the submission holds the best `submission_K` grids per test input, in the
Kaggle ARC Prize format {task id: [{"attempt_1": grid, "attempt_2": grid}, ...]}.
"""

import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..data import parse_name
from ..data import undo_augmentation as _undo

GRID = 30  # ARC sequences are 30 x 30 token grids

GridKey = Tuple[int, int, bytes]  # (rows, cols, uint8 bytes): a grid, hashable and exact


def undo_augmentation(name: str):
    """(original task id, function mapping an augmented grid back to the original's frame), from the
    puzzle name the builder wrote (trm_fast.data owns the naming and the transforms)."""
    task_id = parse_name(name)[0]
    return task_id, lambda grid: _undo(name, np.asarray(grid))[1]


def crop(tokens: np.ndarray) -> np.ndarray:
    """The largest top-left rectangle of colour tokens in a 30 x 30 token grid, as colours 0..9 (uint8)."""
    grid = tokens.reshape(GRID, GRID)
    colour = (grid >= 2) & (grid <= 11)
    # width of the colour run starting at column 0 of each row; a rectangle of r rows is as wide as the narrowest
    run = np.where(colour.all(axis=1), GRID, np.argmin(colour, axis=1))
    width = np.minimum.accumulate(run)
    area = width * np.arange(1, GRID + 1)
    rows = int(np.argmax(area)) + 1 if area.max() > 0 else 0
    return (grid[:rows, :width[rows - 1] if rows else 0] - 2).astype(np.uint8)


def grid_key(grid: np.ndarray) -> GridKey:
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    return grid.shape[0], grid.shape[1], grid.tobytes()


def key_grid(key: GridKey) -> List[List[int]]:
    rows, cols, data = key
    return np.frombuffer(data, dtype=np.uint8).reshape(rows, cols).tolist()


def read_arc_files(data_dir: str) -> Tuple[List[str], dict]:
    """(identifiers.json, test_puzzles.json) of an ARC dataset directory, checked."""
    out = []
    for name in ("identifiers.json", "test_puzzles.json"):
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ARC evaluation needs {path}")
        try:
            with open(path, encoding="utf-8") as f:
                out.append(json.load(f))
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
    identifiers, puzzles = out
    if not isinstance(identifiers, list) or not all(isinstance(n, str) for n in identifiers):
        raise ValueError(f"{os.path.join(data_dir, 'identifiers.json')} must be a list of puzzle names")
    if not isinstance(puzzles, dict) or not all(isinstance(p, dict) and isinstance(p.get("test"), list)
                                                for p in puzzles.values()):
        raise ValueError(f"{os.path.join(data_dir, 'test_puzzles.json')} must map puzzle names to puzzles "
                         "with a 'test' list")
    return identifiers, puzzles


class ArcVotes:
    """Votes per (original puzzle, original input grid): {prediction grid: [count, sum of confidence]}."""

    def __init__(self, identifiers: Sequence[str], blank_identifier_id: int):
        self.identifiers, self.blank = identifiers, blank_identifier_id
        self.votes: Dict[Tuple[str, GridKey], Dict[GridKey, List[float]]] = {}

    def add(self, puzzle_ids: np.ndarray, inputs: np.ndarray, preds: np.ndarray, q_halt_logits: np.ndarray):
        """One batch (CPU arrays); padding rows (the blank identifier) are skipped."""
        confidence = 1 / (1 + np.exp(-q_halt_logits.astype(np.float64)))
        for pid, inp, pred, q in zip(puzzle_ids, inputs, preds, confidence):
            if pid == self.blank:
                continue
            if not 0 <= pid < len(self.identifiers):
                raise ValueError(f"puzzle identifier {pid} is not in identifiers.json ({len(self.identifiers)} names)")
            name, undo = undo_augmentation(self.identifiers[pid])
            tally = self.votes.setdefault((name, grid_key(undo(crop(inp)))), {})
            entry = tally.setdefault(grid_key(undo(crop(pred))), [0, 0.0])
            entry[0] += 1
            entry[1] += float(q)

    def merge(self, other: "ArcVotes"):
        for where, tally in other.votes.items():
            mine = self.votes.setdefault(where, {})
            for grid, (count, q_sum) in tally.items():
                entry = mine.setdefault(grid, [0, 0.0])
                entry[0] += count
                entry[1] += q_sum

    def state_dict(self) -> list:
        return [[name, list(inp), [[list(g), c, q] for g, (c, q) in tally.items()]]
                for (name, inp), tally in self.votes.items()]

    def load_state_dict(self, state: list):
        self.votes = {(name, tuple(inp)): {tuple(g): [c, q] for g, c, q in tally} for name, inp, tally in state}

    def ranked(self, name: str, input_grid) -> List[GridKey]:
        tally = self.votes.get((name, grid_key(np.array(input_grid, dtype=np.uint8))), {})
        # stable sort: ties keep first-seen order, as the official evaluator
        return [g for g, _ in sorted(tally.items(), key=lambda kv: (kv[1][0], kv[1][1] / kv[1][0]), reverse=True)]

    def score(self, test_puzzles: dict, pass_ks: Sequence[int] = (1, 2), submission_k: int = 2):
        """({"ARC/pass@K": ...}, submission). Test inputs without any prediction count as wrong; their
        submission entry is a [[0]] grid (the official evaluator leaves them out of the file)."""
        correct = np.zeros(len(pass_ks))
        submission = {}
        for name, puzzle in test_puzzles.items():
            hits, attempts = np.zeros(len(pass_ks)), []
            for pair in puzzle["test"]:
                ranked = self.ranked(name, pair["input"])
                if "output" in pair:
                    truth = grid_key(np.array(pair["output"], dtype=np.uint8))
                    hits += [truth in ranked[:k] for k in pass_ks]
                grids = [key_grid(g) for g in ranked[:submission_k]] or [[[0]]]
                grids += [grids[0]] * (submission_k - len(grids))
                attempts.append({f"attempt_{i + 1}": g for i, g in enumerate(grids)})
            submission[name] = attempts
            correct += hits / max(len(puzzle["test"]), 1)
        metrics = {f"ARC/pass@{k}": float(c / max(len(test_puzzles), 1)) for k, c in zip(pass_ks, correct)}
        return metrics, submission


def write_submission(submission: dict, path: str):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(submission, f)
    os.replace(tmp, path)
