"""The `trm-fast` command line: one module per subcommand (data, train, eval, bench, ...)."""
