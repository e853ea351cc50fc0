"""Square mazes whose shortest start-to-goal path is long and unique, solved by breadth-first search.

A maze is a boolean (n, n) array, True for an open cell; moves go up, down, left and right.

Generation: open a lattice of cells two apart (at a random parity, so the maze may touch any
edge) and join them by a random depth-first spanning tree, which makes long winding corridors;
then open a fraction `loop_fraction` of the remaining walls between lattice neighbours, so that
there are several routes and the shortest one has to be found. The start is a random open cell;
the goal a random cell whose shortest path from the start has at least `min_path_length` moves
and is the only shortest path (so the label is well defined). Maze-Hard keeps paths longer than
110 moves on 30x30 grids.
"""

from collections import deque

import numpy as np

from .errors import DatasetInputError


def bfs(open_cells: np.ndarray, start: tuple):
    """`(distance, ways)` from `start`: moves to reach each open cell (-1: unreachable) and the number of
    distinct shortest paths to it, capped at 2."""
    n_rows, n_cols = open_cells.shape
    distance = np.full(open_cells.shape, -1, np.int64)
    ways = np.zeros(open_cells.shape, np.int64)
    distance[start], ways[start] = 0, 1
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < n_rows and 0 <= nc < n_cols and open_cells[nr, nc]:
                if distance[nr, nc] < 0:
                    distance[nr, nc] = distance[r, c] + 1
                    queue.append((nr, nc))
                if distance[nr, nc] == distance[r, c] + 1:
                    ways[nr, nc] = min(2, ways[nr, nc] + ways[r, c])
    return distance, ways


def trace_back(distance: np.ndarray, goal: tuple) -> list:
    """A shortest path from the start (distance 0) to `goal`, as a list of cells from start to goal."""
    path = [goal]
    r, c = goal
    while distance[r, c] > 0:
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < distance.shape[0] and 0 <= nc < distance.shape[1] and distance[nr, nc] == distance[r, c] - 1:
                r, c = nr, nc
                break
        path.append((r, c))
    return path[::-1]


def carve(rng: np.random.Generator, size: int, loop_fraction: float) -> np.ndarray:
    """A random braided maze: a depth-first spanning tree of a lattice plus some extra openings."""
    origin = rng.integers(0, 2, size=2)  # lattice parity along rows and columns
    n_rows, n_cols = (size - origin + 1) // 2
    open_cells = np.zeros((size, size), bool)
    open_cells[origin[0]::2, origin[1]::2][:n_rows, :n_cols] = True
    visited = np.zeros((n_rows, n_cols), bool)
    stack = [(int(rng.integers(n_rows)), int(rng.integers(n_cols)))]
    visited[stack[0]] = True
    while stack:
        r, c = stack[-1]
        nexts = [(nr, nc) for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                 if 0 <= nr < n_rows and 0 <= nc < n_cols and not visited[nr, nc]]
        if not nexts:
            stack.pop()
            continue
        nr, nc = nexts[rng.integers(len(nexts))]
        visited[nr, nc] = True
        open_cells[origin[0] + r + nr, origin[1] + c + nc] = True  # the wall between the two lattice cells
        stack.append((nr, nc))
    # walls between two lattice cells: even offset along one axis, odd along the other
    rows, cols = np.indices((size, size))
    between = ((rows - origin[0]) % 2 + (cols - origin[1]) % 2 == 1)
    between &= (rows >= origin[0]) & (cols >= origin[1])
    between &= (rows < origin[0] + 2 * n_rows - 1) & (cols < origin[1] + 2 * n_cols - 1)
    open_cells |= between & ~open_cells & (rng.random((size, size)) < loop_fraction)
    return open_cells


def longest_path(size: int) -> int:
    """An upper bound on the moves of a simple path in a carved maze: a path visits each lattice cell at
    most once, with one wall cell between two of them, and may start and end on a wall cell."""
    lattice_cells = ((size + 1) // 2) ** 2
    return 2 * lattice_cells


def generate(rng: np.random.Generator, size: int = 30, min_path_length: int = 111, loop_fraction: float = 0.1,
             max_tries: int = 10_000):
    """`(open_cells, start, goal, path)`: a maze and its unique shortest path (start and goal included)."""
    for _ in range(max_tries):
        open_cells = carve(rng, size, loop_fraction)
        cells = np.argwhere(open_cells)
        start = tuple(int(x) for x in cells[rng.integers(len(cells))])
        distance, ways = bfs(open_cells, start)
        goals = np.argwhere((distance >= min_path_length) & (ways == 1))
        if len(goals):
            goal = tuple(int(x) for x in goals[rng.integers(len(goals))])
            return open_cells, start, goal, trace_back(distance, goal)
    raise DatasetInputError(f"no {size}x{size} maze with a unique shortest path of >= {min_path_length} moves in "
                            f"{max_tries} tries; lower --min-path-length or raise --size")
