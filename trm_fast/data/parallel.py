"""Draw many random items, in parallel, with a result that does not depend on the worker count.

Item i of stream s is drawn from its own generator, `np.random.default_rng([seed, s, i])`, so
the items (and their order) are the same with 1 worker or 16.
"""

import multiprocessing
from functools import partial

import numpy as np
from tqdm import tqdm


def _draw(make, seed: int, stream: int, index: int):
    return make(np.random.default_rng([seed, stream, index]))


def draw_items(make, count: int, *, seed: int, stream: int, workers: int = 1, desc: str = "generating"):
    """`[make(rng_0), ..., make(rng_{count-1})]`; `make` must be a picklable top-level callable."""
    draw = partial(_draw, make, seed, stream)
    bar = dict(total=count, desc=desc, unit=" puzzles", leave=False)
    if workers <= 1 or count <= 1:
        return [draw(i) for i in tqdm(range(count), **bar)]
    # spawn, not fork: the parent may hold threads (tqdm's monitor, torch's pools) that fork copies badly
    with multiprocessing.get_context("spawn").Pool(min(workers, count)) as pool:
        return list(tqdm(pool.imap(draw, range(count), chunksize=max(1, min(64, count // (8 * workers)))), **bar))
