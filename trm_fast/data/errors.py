"""The one exception the dataset builders raise for bad input."""


class DatasetInputError(ValueError):
    """A source file, directory or argument that a builder cannot use.

    The message names the input (file and line, or file and JSON path, or the argument) and what
    is wrong with it, so that `trm-fast data` can print it as it is.
    """
