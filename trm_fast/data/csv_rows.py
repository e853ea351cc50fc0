"""Reading the public puzzle CSVs (Sudoku-Extreme, Maze-Hard).

Both are a header line followed by rows of four fields, `source,question,answer,rating`, where
`question` and `answer` are the puzzle's cells as one string, row by row.
"""

import csv
from pathlib import Path

from tqdm import tqdm

from .errors import DatasetInputError

FIELDS = ("source", "question", "answer", "rating")


def read_puzzle_csv(path):
    """Yield `(line_number, source, question, answer, rating)` for every row after the header.

    A missing file, an empty one, undecodable text or a row without exactly four fields raises
    DatasetInputError naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetInputError(f"{path}: no such file")
    with open(path, "rb") as f:
        reader = csv.reader(_decoded_lines(f, path))
        try:
            if next(reader, None) is None:
                raise DatasetInputError(f"{path}: empty file (expected a header line {','.join(FIELDS)})")
            for row in tqdm(reader, desc=f"reading {path.name}", unit=" rows", leave=False):
                if len(row) != len(FIELDS):
                    raise DatasetInputError(f"{path}:{reader.line_num}: expected {len(FIELDS)} fields "
                                            f"({','.join(FIELDS)}), got {len(row)}")
                yield (reader.line_num, *row)
        except csv.Error as err:
            raise DatasetInputError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None


def _decoded_lines(f, path):
    """The file's lines as text, so that a bad byte is reported on its own line."""
    for number, raw in enumerate(f, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DatasetInputError(f"{path}:{number}: not UTF-8 text ({err.reason})") from None
