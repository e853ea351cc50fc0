"""Writing to disk: a full disk is one error naming the file, found before the write where the size is
known, and directories a failed write created are removed again.

A write that runs out of room fails in several ways: OSError ENOSPC (no space left), EDQUOT (a quota) or
EFBIG (a file-size limit, `ulimit -f`); a short write from NumPy ("N requested and M written"); or, from
torch.save, a RuntimeError "[enforce fail at inline_container.cc] ... unexpected pos" whose context is
the OSError. `reporting_full_disk(path)` turns each into DiskFullError naming the file.
"""

import errno
import os
import re
import shutil
from contextlib import contextmanager
from typing import Optional

_FULL = {errno.ENOSPC: "the disk is full: free some space or write elsewhere",
         errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
         errno.EFBIG: "the file is larger than the file-size limit (ulimit -f): raise it or write elsewhere"}


class DiskFullError(OSError):
    """A write ran (or would run) out of room; the message names the file and what to do."""

    def __init__(self, path, why: str):
        super().__init__(f"cannot write {path}: {why}")
        self.why = why


def _why_full(err: BaseException) -> Optional[str]:
    """What to tell the user when `err` (or an exception in its context) is a full disk, else None."""
    chain = []
    while err is not None:
        chain.append(err)
        err = err.__context__
    for e in chain:
        if isinstance(e, OSError) and e.errno in _FULL:
            return _FULL[e.errno]
    for e in chain:  # the same without an errno: numpy's short write, torch's writer
        if (isinstance(e, OSError) and re.fullmatch(r"\d+ requested and \d+ written", str(e))
                or isinstance(e, RuntimeError) and "unexpected pos" in str(e)):
            return _FULL[errno.ENOSPC]
    return None


@contextmanager
def reporting_full_disk(path):
    """Turn a full disk while writing `path` (a file, or a directory being filled) into DiskFullError."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        why = err.why if isinstance(err, DiskFullError) else _why_full(err)  # named by the outermost path
        if why is None:
            raise
        raise DiskFullError(path, why) from None


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes} bytes"


def existing_ancestor(path) -> str:
    """`path` itself if it exists, else its nearest existing parent directory."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def check_free_space(path, nbytes: int, what: str):
    """DiskFullError now, rather than half-way through, when writing `nbytes` at `path` cannot fit."""
    free = shutil.disk_usage(existing_ancestor(path)).free
    if nbytes > free:
        raise DiskFullError(path, f"{what} needs {_size(nbytes)} and the disk has {_size(free)} free: free some "
                                  "space or write elsewhere")


@contextmanager
def atomic_file(path, mode: str = "w"):
    """A file opened beside `path` that replaces it once the block ends, flushed to disk, so that `path` is
    either the old file or the new one; on an error nothing is left and a full disk is DiskFullError."""
    path = os.fspath(path)
    make_dirs(os.path.dirname(os.path.abspath(path)))
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with reporting_full_disk(path):
            with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def make_dirs(path) -> Optional[str]:
    """os.makedirs(path, exist_ok=True); returns the outermost directory it made (None if none), for
    `remove_dirs` to undo it when the work fails."""
    top = None
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        top, parent = parent, os.path.dirname(parent)
    os.makedirs(path, exist_ok=True)
    return top


def remove_dirs(path, top: Optional[str]):
    """Remove `path` and what it holds, then its parents up to `top` (what make_dirs returned) while they
    are empty, so that a failure leaves no empty directories behind."""
    shutil.rmtree(path, ignore_errors=True)
    path = os.path.abspath(path)
    top = os.path.abspath(top) if top is not None else None
    while top is not None and path.startswith(top + os.sep):
        path = os.path.dirname(path)
        try:
            os.rmdir(path)
        except OSError:  # not empty: something else lives there
            return
