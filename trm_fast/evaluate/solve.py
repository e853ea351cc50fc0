"""Solve Sudoku puzzles with a trained model: `trm-fast solve`.

Puzzles come as 81-character strings (row by row, '0' or '.' for a blank) with the place each came from,
or as a Sudoku dataset in the official format. Each answer says how many ACT steps the model took,
whether it stopped on its own (its Q head said halt) and whether the grid is a valid solution that
keeps the clues; a dataset's answers are also checked against its labels.
"""

import os
import warnings
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..data.errors import DatasetInputError
from ..data.sudoku import SEQ_LEN, VOCAB_SIZE, invalid_pairs, parse_puzzle
from ..engine import Engine
from ..data.dataset import Metadata, PuzzleSplit
from .checkpoint import default_device, load_model
from .model_file import halt_threshold_for

# Sudoku as the builders write it: token = digit + 1 (1 is a blank), one puzzle identifier (the blank one)
SUDOKU = Metadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=VOCAB_SIZE, seq_len=SEQ_LEN,
                  num_puzzle_identifiers=1, total_groups=1, mean_puzzle_examples=1.0, total_puzzles=1, sets=["all"])
COMPILE_FROM = 20_000  # puzzles from which compiling the step (about half a minute) pays for itself on a GPU


@dataclass
class Answer:
    source: str  # where the puzzle came from: "argument 2", "puzzles.txt:14", "stdin:3", "data/test #17"
    puzzle: str  # 81 characters, '.' for a blank
    solution: str  # 81 digits, '.' where the model predicted no digit
    steps: int  # ACT steps taken
    halted: bool  # the model's Q head said halt (otherwise it ran out of steps)
    valid: bool  # a full grid that keeps every clue and repeats no digit in a row, column or box
    exact: Optional[bool] = None  # equal to the dataset's label (datasets only)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _text(digits) -> str:
    return "".join(str(int(d)) if 0 < d <= 9 else "." for d in digits)


def _answers(sources, digits: np.ndarray, solution, labels=None) -> List[Answer]:
    preds = solution.preds.cpu().numpy().astype(np.int64) - 1  # token -> digit (blank and padding: < 1)
    preds[(preds < 1) | (preds > 9)] = 0
    bad = set(invalid_pairs(digits, preds).tolist())
    steps, halted = solution.steps.tolist(), solution.halted_by_model.tolist()
    return [Answer(src, _text(digits[i]), _text(preds[i]), steps[i], halted[i], i not in bad,
                   None if labels is None else bool((preds[i] == labels[i]).all()))
            for i, src in enumerate(sources)]


def _engine(checkpoint: str, data: Metadata, data_name: str, count: int, *, batch_size: int, device,
            config_path, use_ema: bool, compile: Optional[bool]) -> Engine:
    device = default_device(device)
    model, _, _ = load_model(checkpoint, data, data_name, batch_size=batch_size, device=device,
                             config_path=config_path, use_ema=use_ema)
    if compile is None:
        compile = device.type == "cuda" and count >= COMPILE_FROM
    with warnings.catch_warnings():  # that a CPU computes in float32 is no news to someone solving Sudokus
        warnings.filterwarnings("ignore", message="trm_fast.Engine computes in float32 on the CPU")
        return Engine(model, batch_size, compile=compile)


def solve_puzzles(checkpoint: str, puzzles: Sequence[Tuple[str, str]], *, halting: str = "q", batch_size: int = 256,
                  device=None, config_path=None, use_ema: bool = True, compile: Optional[bool] = None,
                  halt_threshold: Optional[float] = None):
    """Solve (source, 81-character text) puzzles; returns (answers, [(source, why) of each rejected one]).
    `halt_threshold`: default, the model file's (0 for other checkpoints)."""
    kept, rejected = [], []
    for source, text in puzzles:
        try:
            kept.append((source, parse_puzzle(text)))
        except DatasetInputError as err:
            rejected.append((source, str(err)))
    if not kept:
        return [], rejected
    digits = np.stack([d for _, d in kept])
    engine = _engine(checkpoint, SUDOKU, "Sudoku puzzles (81 cells, vocab 11)", len(kept), batch_size=batch_size,
                     device=device, config_path=config_path, use_ema=use_ema, compile=compile)
    tokens = digits.astype(np.int32) + 1
    solution = engine.solve(tokens, np.zeros(len(kept), np.int32), halting,
                            halt_threshold=halt_threshold_for(checkpoint, halt_threshold))
    return _answers([s for s, _ in kept], digits, solution), rejected


def solve_dataset(checkpoint: str, data_dir: str, *, split: str = "test", halting: str = "q", batch_size: int = 256,
                  device=None, config_path=None, use_ema: bool = True, compile: Optional[bool] = None,
                  halt_threshold: Optional[float] = None) -> List[Answer]:
    """Solve every example of a Sudoku dataset's split (official format), each checked against its label."""
    data = PuzzleSplit([data_dir], split)
    meta_file = os.path.join(data_dir, split, "dataset.json")
    if (data.metadata.seq_len, data.metadata.vocab_size) != (SEQ_LEN, VOCAB_SIZE):
        raise ValueError(f"{meta_file} is not a Sudoku dataset (seq_len {data.metadata.seq_len}, vocab_size "
                         f"{data.metadata.vocab_size}; Sudoku has {SEQ_LEN} and {VOCAB_SIZE}): `trm-fast eval` "
                         "evaluates any dataset")
    count = sum(s.inputs.shape[0] for s in data.sets.values())
    engine = _engine(checkpoint, data.metadata, meta_file, count, batch_size=batch_size, device=device,
                     config_path=config_path, use_ema=use_ema, compile=compile)
    halt_threshold = halt_threshold_for(checkpoint, halt_threshold)
    answers = []
    for name, part in data.sets.items():
        rows = np.arange(part.inputs.shape[0])
        batch = data.collate(name, rows)
        solution = engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting, halt_threshold=halt_threshold)
        digits = np.asarray(part.inputs, np.int64) - 1
        labels = np.asarray(part.labels, np.int64) - 1
        where = os.path.join(data_dir, split) + (f" set {name}" if len(data.sets) > 1 else "")
        answers += _answers([f"{where} #{i}" for i in rows], digits, solution, labels)
    return answers
