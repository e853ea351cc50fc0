"""Maze: generator and BFS labels, CSV import, symmetries, the written format, bad input."""

import numpy as np
import pytest
from trm_fast.data import DatasetInputError, generate_mazes, read_maze_csv, write_maze_dataset
from trm_fast.data.maze import GOAL, OPEN, PATH, START, WALL
from trm_fast.data.maze_generator import bfs

from _datasets_util import MAZE_ROWS, check_dataset, dataset_digest, write_csv

# What the official build_maze_dataset.py writes for the fixture CSVs after np.random.seed(5) with
# subsample_size=2, aug=True.
OFFICIAL_DIGEST = {
    "identifiers.json": "55b844f3f061906c", "test/all__group_indices.npy": "1496b8f246477961",
    "test/all__inputs.npy": "4cab7b490c1afa95", "test/all__labels.npy": "2b2ba29c23dedf2f",
    "test/all__puzzle_identifiers.npy": "45e2f25e02832ebe", "test/all__puzzle_indices.npy": "1496b8f246477961",
    "test/dataset.json": "0fd7e5f04db8ae8e", "train/all__group_indices.npy": "2b7a4020a6cf0103",
    "train/all__inputs.npy": "25760d1ffe27a838", "train/all__labels.npy": "f334e962249f0742",
    "train/all__puzzle_identifiers.npy": "155434a95cc510c7", "train/all__puzzle_indices.npy": "ae19474e62890da1",
    "train/dataset.json": "0fd7e5f04db8ae8e",
}


def assert_solved(question: np.ndarray, answer: np.ndarray, min_length: int = 1):
    """The answer marks the one shortest S-G path of the question, and changes nothing else."""
    size = int(round(len(question) ** 0.5))
    q, a = question.reshape(size, size), answer.reshape(size, size)
    assert (q == START).sum() == (q == GOAL).sum() == 1 and set(np.unique(q)) <= {WALL, OPEN, START, GOAL}
    start, goal = (tuple(np.argwhere(q == t)[0]) for t in (START, GOAL))
    distance, ways = bfs(q != WALL, start)
    assert distance[goal] >= min_length and ways[goal] == 1
    path = a == PATH
    assert np.array_equal(np.where(path, OPEN, a), q)  # only open cells became path
    assert path.sum() == distance[goal] - 1
    from_goal, _ = bfs(q != WALL, goal)
    assert (distance[path] + from_goal[path] == distance[goal]).all()  # every path cell is on a shortest path


def test_generated_mazes_have_a_long_unique_shortest_path():
    questions, answers = generate_mazes(3, size=30, min_path_length=111, seed=0)
    assert questions.shape == answers.shape == (3, 900)
    for q, a in zip(questions, answers):
        assert_solved(q, a, min_length=111)
    again = generate_mazes(3, size=30, min_path_length=111, seed=0)
    assert np.array_equal(again[0], questions) and np.array_equal(again[1], answers)
    assert not np.array_equal(generate_mazes(1, size=30, min_path_length=111, seed=1)[0], questions[:1])


def test_csv_import(maze_csv_dir):
    questions, answers = read_maze_csv(maze_csv_dir / "train.csv")
    chars = np.array(list(" # SGo"))
    assert [("".join(chars[q]), "".join(chars[a])) for q, a in zip(questions, answers)] == \
        [row[:2] for row in MAZE_ROWS[:3]]
    for q, a in zip(questions, answers):
        assert_solved(q, a)


def test_build_matches_official_builder(maze_csv_dir, tmp_path):
    train, test = read_maze_csv(maze_csv_dir / "train.csv"), read_maze_csv(maze_csv_dir / "test.csv")
    write_maze_dataset(tmp_path / "out", train, test, aug=True, subsample=2, seed=5)
    assert dataset_digest(tmp_path / "out") == OFFICIAL_DIGEST
    check_dataset(tmp_path / "out", vocab_size=6, seq_len=49)


def test_symmetries_keep_mazes_solved(tmp_path):
    train = generate_mazes(2, size=12, min_path_length=20, seed=3)
    test = generate_mazes(1, size=12, min_path_length=20, seed=3, stream=1)
    write_maze_dataset(tmp_path / "out", train, test, aug=True)
    splits = check_dataset(tmp_path / "out", vocab_size=6, seq_len=144)
    split = splits["train"]
    assert split["group_indices"].tolist() == [0, 8, 16] and len(splits["test"]["inputs"]) == 1
    assert np.array_equal(split["inputs"][::8], train[0])
    assert len({q.tobytes() for q in split["inputs"][:8]}) == 8
    for q, a in zip(split["inputs"], split["labels"]):
        assert_solved(q, a, min_length=20)


@pytest.mark.parametrize("row, message", [
    (("#" * 48, "#" * 49, 0), "question must be 49 characters"),
    (("#" * 49, "#" * 48, 0), "answer must be 49 characters"),
    ((MAZE_ROWS[0][0].replace(" ", ".", 1), MAZE_ROWS[0][1], 0), "question has a character outside"),
    ((MAZE_ROWS[0][0], MAZE_ROWS[0][1].replace("o", "x", 1), 0), "answer has a character outside"),
    ((MAZE_ROWS[0][0], MAZE_ROWS[0][1].replace("#", " ", 1), 0), "answer's walls differ"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = write_csv(tmp_path / "bad.csv", [MAZE_ROWS[1], row])
    with pytest.raises(DatasetInputError, match=message) as err:
        read_maze_csv(path)
    assert str(err.value).startswith(f"{path}:3: ")


def test_bad_files(tmp_path):
    path = write_csv(tmp_path / "square.csv", [("#" * 50, "#" * 50, 0)])
    with pytest.raises(DatasetInputError, match=r"square.csv:2: question has 50 cells, not a square grid"):
        read_maze_csv(path)
    with pytest.raises(DatasetInputError, match="nowhere.csv: no such file"):
        read_maze_csv(tmp_path / "nowhere.csv")
    small = generate_mazes(1, size=8, min_path_length=4, seed=0)
    with pytest.raises(DatasetInputError, match="training mazes have 64 cells but test mazes 100"):
        write_maze_dataset(tmp_path / "out", small, generate_mazes(1, size=10, min_path_length=4, seed=0))
    assert not (tmp_path / "out").exists()
