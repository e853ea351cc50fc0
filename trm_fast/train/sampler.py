"""Which examples go into which training batch: the official puzzle_dataset.py semantics, with a
position that can be saved and restored for exact resume.

Training, one *iteration* = `epochs_per_iter` epochs (the official eval_interval) over every set:

    for each set:  n += 1;  rng = Philox(seed + n)          (n counts set-epochs over the whole run)
        order = concat(epochs_per_iter permutations of the set's groups)    (drawn from rng)
        fill a batch of global_batch_size examples: take the next group in `order`, pick one of its
        puzzles uniformly (rng), and as many of that puzzle's examples as still fit, in random order
        a batch that cannot be filled ends the set (dropped, as officially)
    rank r of W keeps rows [r * B / W, (r + 1) * B / W) of each global batch

The official code draws the examples of a multi-example puzzle (ARC) from NumPy's global RNG, which
its data-loader worker seeds from the rank's torch seed, so ranks may disagree; here they come from a
second Philox stream seeded by (seed, n), the same on every rank. Group order and puzzle choice follow
the official stream exactly, so single-example datasets (Sudoku, Maze) get the official batches.
"""

from typing import Iterator, Optional, Tuple

import numpy as np

from ..data.dataset import PuzzleSet, PuzzleSplit


def _philox(seed) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(seed=seed))


def _plain_state(state):
    """A bit generator's state with its arrays as lists, so that checkpoints load with weights_only."""
    if isinstance(state, dict):
        return {k: _plain_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"__array__": [int(x) for x in state.ravel()], "dtype": str(state.dtype)}
    return state


def _array_state(state):
    if isinstance(state, dict) and "__array__" in state:
        return np.array(state["__array__"], dtype=state["dtype"])
    if isinstance(state, dict):
        return {k: _array_state(v) for k, v in state.items()}
    return state


def draw_batch(rng, example_rng, order: np.ndarray, start: int, data: PuzzleSet, size: int):
    """Fill one batch from groups order[start:]; returns (next start, example rows, puzzle rows)."""
    examples, puzzles, filled = [], [], 0
    while start < order.size and filled < size:
        group = order[start]
        start += 1
        puzzle = rng.integers(data.group_indices[group], data.group_indices[group + 1])
        first, end = int(data.puzzle_indices[puzzle]), int(data.puzzle_indices[puzzle + 1])
        count = end - first
        take = min(count, size - filled)
        examples.append(first + (example_rng.permutation(count)[:take] if count > 1 else np.zeros(take, np.int64)))
        puzzles.append(np.full(take, puzzle, np.int64))
        filled += take
    if not examples:
        return start, np.zeros(0, np.int64), np.zeros(0, np.int64)
    return start, np.concatenate(examples), np.concatenate(puzzles)


class TrainSampler:
    """Training batches, one iteration per `iteration()` call; `state_dict()` is the position after the
    batch last yielded."""

    def __init__(self, split: PuzzleSplit, *, seed: int, global_batch_size: int, epochs_per_iter: int,
                 rank: int = 0, world_size: int = 1):
        self.split, self.seed, self.global_batch_size = split, seed, global_batch_size
        self.epochs_per_iter, self.rank = epochs_per_iter, rank
        self.local_batch_size = global_batch_size // world_size
        self.set_epochs = 0  # the official `_iters`
        self._resume: Optional[dict] = None  # where to re-enter an iteration
        self._position: Optional[dict] = None  # inside an iteration: set index, start, generator states

    def _set_epoch(self, data: PuzzleSet, set_epochs: int):
        rng = _philox(self.seed + set_epochs)
        order = np.concatenate([rng.permutation(data.num_groups) for _ in range(self.epochs_per_iter)])
        return rng, _philox([self.seed, set_epochs]), order

    def iteration(self) -> Iterator[Tuple[str, dict, int]]:
        """Yields (set name, this rank's batch, global number of real examples) for one iteration."""
        resume, self._resume = self._resume, None
        names = list(self.split.sets)
        for set_index in range(resume["set_index"] if resume else 0, len(names)):
            data = self.split.sets[names[set_index]]
            if resume and set_index == resume["set_index"]:
                rng, example_rng, order = self._set_epoch(data, self.set_epochs)
                rng.bit_generator.state = _array_state(resume["rng"])
                example_rng.bit_generator.state = _array_state(resume["example_rng"])
                start = resume["start"]
            else:
                self.set_epochs += 1
                rng, example_rng, order = self._set_epoch(data, self.set_epochs)
                start = 0
            while start < order.size:
                start, examples, puzzles = draw_batch(rng, example_rng, order, start, data, self.global_batch_size)
                if puzzles.size < self.global_batch_size:
                    break  # drop the last, partial batch
                self._position = dict(set_index=set_index, start=start, rng=_plain_state(rng.bit_generator.state),
                                      example_rng=_plain_state(example_rng.bit_generator.state))
                mine = slice(self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size)
                batch = self.split.collate(names[set_index], examples[mine], puzzles[mine])
                yield names[set_index], batch, int(puzzles.size)
        self._position = None

    def state_dict(self) -> dict:
        return {"set_epochs": self.set_epochs, "position": self._position}

    def load_state_dict(self, state: dict):
        self.set_epochs = int(state["set_epochs"])
        self._position = state["position"]
        self._resume = state["position"]

