"""What every command checks before it starts working: the device is there, and each output can be written
(its directory exists or can be created, and a file can be made in it). A failed check is a UsageError
naming the option and what to do."""

import argparse
import math
import os
import tempfile

from ..disk import existing_ancestor
from . import UsageError


def finite_float(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def device(name=None):
    """`--device NAME` as a torch.device (default: cuda when one is visible, else cpu)."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:  # not a device name at all
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: not a device trm-fast runs on; use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise UsageError(f"--device {name}: {why}; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"--device {name}: {count} CUDA device(s) visible, cuda:0 to cuda:{count - 1}")
    return dev


def _unwritable(path, directory: bool) -> str:
    """Why `path` cannot be written as a file (or filled as a directory), or '' when it can."""
    if os.path.exists(path) and os.path.isdir(path) != directory:
        return "is a directory" if not directory else "exists and is not a directory"
    if os.path.isfile(path) and not os.access(path, os.W_OK):
        return "is read-only"
    parent = existing_ancestor(path if directory else os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(parent):
        return f"{parent} is not a directory"
    try:  # the only test that holds for root too (read-only mounts, /proc): make a file there
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".trm-fast-check-"):
            pass
    except OSError as err:
        return f"cannot write into {parent} ({err.strerror})"
    return ""


def writable(path, option: str, directory: bool = False):
    """UsageError unless the file `path` (a directory with `directory`) can be written; creates nothing."""
    why = _unwritable(os.fspath(path), directory)
    if why:
        raise UsageError(f"{option} {path}: {why}; choose another path")
