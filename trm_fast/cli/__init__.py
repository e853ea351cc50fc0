"""The `trm-fast` command line: one module per subcommand (data, train, eval, bench, ...).

Every command checks its arguments, devices and output paths (`checks`) before it starts working. An
expected failure ends in one line, `trm-fast COMMAND: error: ...`, printed by main.py: exit status 2 for
a bad argument or input (UsageError), 1 for a failure while working: a full disk (trm_fast.disk's
DiskFullError). Anything else is a bug and keeps its traceback.
"""

from contextlib import contextmanager

from ..backend import FusedUnavailableError
from ..disk import DiskFullError

# what the library raises for bad input, naming it: missing or unreadable files, bad keys or values, a backend
# that cannot run here
BAD_INPUT = (OSError, ValueError, FusedUnavailableError)


class UsageError(Exception):
    """A bad argument a command found: printed as `trm-fast COMMAND: error: ...`, exit status 2."""


@contextmanager
def usage_errors(*types):
    """The library's errors of `types` (bad files, keys, values; their messages name them) as UsageError;
    a full disk stays a failure, though an OSError."""
    try:
        yield
    except DiskFullError:
        raise
    except types as err:
        raise UsageError(str(err)) from None
