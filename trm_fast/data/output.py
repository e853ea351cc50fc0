"""Build a dataset directory without ever leaving a half-written one behind.

Everything is written into a hidden sibling directory (same file system, so the final rename is
atomic) that replaces `--out` only once the build has finished; on any error or interrupt the
sibling (and any parent directory made for it) is removed and `--out` is left as it was. A full disk
is DiskFullError naming `--out`.
"""

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..disk import make_dirs, remove_dirs, reporting_full_disk
from .errors import DatasetInputError


def check_output_dir(out, force: bool) -> Path:
    """Refuse an `--out` that is a file, or a non-empty directory unless `force`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetInputError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DatasetInputError(f"--out {out}: directory exists and is not empty; pass --force to replace it")
    return out


@contextmanager
def staged_output(out, force: bool = False):
    """Yield an empty directory to build into; on success it becomes `out` (replacing it if `force`)."""
    out = check_output_dir(out, force).absolute()
    made = make_dirs(out.parent)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage = out.with_name(f".{out.name}.partial-{tag}")
    stage.mkdir()
    try:
        with reporting_full_disk(out):
            yield stage
    except BaseException:
        remove_dirs(stage, made)
        raise
    if not out.exists():
        os.rename(stage, out)
        return
    old = out.with_name(f".{out.name}.old-{tag}")
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(old, out)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(old)
