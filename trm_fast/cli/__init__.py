"""The `trm-fast` command line: one module per subcommand (data, train, eval, bench, ...)."""


class UsageError(Exception):
    """A bad argument a command found: printed as `trm-fast COMMAND: error: ...`, exit status 2."""
