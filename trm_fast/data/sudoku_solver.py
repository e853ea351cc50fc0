"""A plain backtracking Sudoku solver that counts its guesses, and a generator of hard puzzles.

Grids are 81 ints, row by row, 0 for an empty cell and 1..9 for a digit.

The solver fills the empty cell with the fewest candidates first; a cell with one candidate is
filled without a guess (a "naked single"), a cell with none ends the branch. Every time it has to
branch on a cell with two or more candidates it counts one **guess**. It explores the whole search
tree (stopping early only once it has found `limit` solutions), so with `limit=2` the guess count
of a puzzle with one solution depends on the puzzle alone, not on which digit it tries first:
that count is the puzzle's **rating**. Rating 0 means naked singles alone solve it. (The
Sudoku-Extreme CSV's `rating` column comes from another, stronger solver; the two scales differ.)

The generator draws a random full grid, then empties its cells in random order, keeping each
removal only if the puzzle still has a single solution; the result is a minimal puzzle (no given
can be removed, about 24 givens), or, with `givens=G`, the puzzle at the moment only G givens are
left (easier: at 32 givens about half need no guess). Puzzles rated below `min_rating` are dropped
and another one is drawn.
"""

import numpy as np

_ALL = 0x1FF  # candidate digits 1..9 as bits 0..8
_ROW = [i // 9 for i in range(81)]
_COL = [i % 9 for i in range(81)]
_BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(81)]
_COUNT = [bin(m).count("1") for m in range(_ALL + 1)]
_BITS = [[1 << d for d in range(9) if m >> d & 1] for m in range(_ALL + 1)]
_DIGIT = {1 << d: d + 1 for d in range(9)}


class _Search:
    """Depth-first search over one grid; `allowed[c]` can forbid digits at cell c (bit d-1 for digit d)."""

    def __init__(self, grid, allowed=None):
        self.grid = list(grid)
        self.allowed = allowed or [_ALL] * 81
        self.rows, self.cols, self.boxes = [0] * 9, [0] * 9, [0] * 9
        self.consistent = True  # False when the givens already repeat a digit in a unit
        for c, d in enumerate(self.grid):
            if d:
                bit = 1 << (d - 1)
                if (self.rows[_ROW[c]] | self.cols[_COL[c]] | self.boxes[_BOX[c]]) & bit:
                    self.consistent = False
                self.rows[_ROW[c]] |= bit
                self.cols[_COL[c]] |= bit
                self.boxes[_BOX[c]] |= bit
        self.empty = [c for c in range(81) if not self.grid[c]]
        self.guesses = 0
        self.solutions = []

    def run(self, limit: int):
        if self.consistent:
            self._descend(0, limit)
        return self.solutions

    def _descend(self, depth: int, limit: int) -> bool:
        """Fill empty[depth:], return True once `limit` solutions are found (the search stops)."""
        empty, rows, cols, boxes = self.empty, self.rows, self.cols, self.boxes
        if depth == len(empty):
            self.solutions.append(list(self.grid))
            return len(self.solutions) >= limit
        best, best_mask, best_count = depth, 0, 10
        for j in range(depth, len(empty)):  # most constrained cell first
            c = empty[j]
            mask = self.allowed[c] & ~(rows[_ROW[c]] | cols[_COL[c]] | boxes[_BOX[c]])
            count = _COUNT[mask]
            if count < best_count:
                best, best_mask, best_count = j, mask, count
                if count <= 1:
                    break
        if best_count == 0:
            return False
        if best_count > 1:
            self.guesses += 1
        empty[depth], empty[best] = empty[best], empty[depth]
        c = empty[depth]
        r, k, b = _ROW[c], _COL[c], _BOX[c]
        done = False
        for bit in _BITS[best_mask]:
            rows[r] |= bit
            cols[k] |= bit
            boxes[b] |= bit
            self.grid[c] = _DIGIT[bit]
            done = self._descend(depth + 1, limit)
            rows[r] ^= bit
            cols[k] ^= bit
            boxes[b] ^= bit
            if done:
                break
        self.grid[c] = 0
        empty[depth], empty[best] = empty[best], empty[depth]
        return done


def solve(grid, limit: int = 2):
    """Up to `limit` solutions of `grid` and the number of guesses made: `(solutions, guesses)`."""
    search = _Search(grid)
    return search.run(limit), search.guesses


def rate(puzzle):
    """`(solution, rating)` of a puzzle with exactly one solution, or `(None, guesses)` otherwise."""
    solutions, guesses = solve(puzzle, limit=2)
    return (solutions[0] if len(solutions) == 1 else None), guesses


def _random_full_grid(rng: np.random.Generator):
    """A random complete grid: the three diagonal boxes (independent of each other) filled at
    random, the rest completed by the solver, then rows, columns and digits shuffled."""
    grid = [0] * 81
    for box in range(3):
        for cell, digit in zip(range(9), rng.permutation(9) + 1):
            grid[(box * 3 + cell // 3) * 9 + box * 3 + cell % 3] = int(digit)
    (full,), _ = solve(grid, limit=1)  # any filling of the diagonal boxes can be completed
    g = np.asarray(full).reshape(9, 9)
    rows = np.concatenate([band * 3 + rng.permutation(3) for band in rng.permutation(3)])
    cols = np.concatenate([stack * 3 + rng.permutation(3) for stack in rng.permutation(3)])
    digits = np.concatenate([[0], rng.permutation(9) + 1])
    return [int(d) for d in digits[g[rows][:, cols]].reshape(-1)]


def _emptied_puzzle(full, rng: np.random.Generator, givens: int):
    """Empty cells of `full` in random order while the puzzle keeps a single solution, down to a
    minimal puzzle or until `givens` givens are left."""
    puzzle, left = list(full), 81
    for c in rng.permutation(81):
        if left <= givens:
            break
        digit, puzzle[c] = puzzle[c], 0
        allowed = [_ALL] * 81
        allowed[c] ^= 1 << (digit - 1)  # is there a solution with another digit here?
        if _Search(puzzle, allowed).run(limit=1):
            puzzle[c] = digit
        else:
            left -= 1
    return puzzle


def generate(rng: np.random.Generator, min_rating: int = 0, max_tries: int = 100_000, givens: int = 0):
    """`(puzzle, solution, rating)`: a puzzle with a single solution, rated >= min_rating; minimal, or
    emptied no further than `givens` givens (17..81; a puzzle that turns minimal first keeps more)."""
    if givens and not 17 <= givens <= 81:
        raise ValueError(f"givens must be between 17 and 81 (0: minimal puzzles), got {givens}")
    for _ in range(max_tries):
        full = _random_full_grid(rng)
        puzzle = _emptied_puzzle(full, rng, givens)
        solution, rating = rate(puzzle)
        if solution == full and rating >= min_rating:
            return puzzle, solution, rating
    raise RuntimeError(f"no Sudoku rated >= {min_rating} in {max_tries} tries; lower the minimum rating")
