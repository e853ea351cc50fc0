"""The 8 symmetries of a square grid, numbered as the official builders number them.

The number is part of the format: ARC puzzle names carry it (`t<id>`) and the evaluator undoes it.

    0 identity          4 flip left-right (columns reversed)
    1 rotate 90° left   5 flip up-down (rows reversed)
    2 rotate 180°       6 transpose (main diagonal)
    3 rotate 270° left  7 anti-transpose (other diagonal)

Rotations 1 and 3 undo each other; every other one is its own inverse.
"""

import numpy as np

INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)

_TRANSFORMS = (
    lambda g: g,
    lambda g: np.rot90(g, 1),
    lambda g: np.rot90(g, 2),
    lambda g: np.rot90(g, 3),
    lambda g: g[:, ::-1],
    lambda g: g[::-1, :],
    lambda g: g.T,
    lambda g: g[::-1, ::-1].T,
)


def dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    """Symmetry `tid` of a 2-D grid (a view where numpy can make one)."""
    return _TRANSFORMS[tid](grid)


def inverse_dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    """Undo `dihedral(grid, tid)`."""
    return _TRANSFORMS[INVERSE[tid]](grid)
