"""Sudoku: solver and generator, CSV import, augmentation, the written format, bad input."""

import numpy as np
import pytest
from trm_fast.data import DatasetInputError, generate_sudokus, read_sudoku_csv, write_sudoku_dataset
from trm_fast.data.sudoku import invalid_pairs
from trm_fast.data.sudoku_solver import rate, solve

from _datasets_util import SUDOKU_ROWS, check_dataset, dataset_digest, write_csv

# What the official build_sudoku_dataset.py writes for the fixture CSVs after np.random.seed(5) with
# subsample_size=2, min_difficulty=10, num_aug=2 (values and shapes; it stores augmented tokens as int64).
OFFICIAL_DIGEST = {
    "identifiers.json": "55b844f3f061906c", "test/all__group_indices.npy": "b32461f22cd15adb",
    "test/all__inputs.npy": "fee0a1dc23efab7a", "test/all__labels.npy": "57b0fce7a1de2ebe",
    "test/all__puzzle_identifiers.npy": "47802c026e0be165", "test/all__puzzle_indices.npy": "b32461f22cd15adb",
    "test/dataset.json": "d6fbdcf20dea274d", "train/all__group_indices.npy": "d0f682d52e348d40",
    "train/all__inputs.npy": "bf072b0b5c755b29", "train/all__labels.npy": "17bbf84f60008608",
    "train/all__puzzle_identifiers.npy": "c6df02934b67f1e7", "train/all__puzzle_indices.npy": "7434dc37894738e6",
    "train/dataset.json": "15b375e00a0049ab",
}


def digits(cells: str):
    return [0 if c == "." else int(c) for c in cells]


def test_solver_rates_and_counts_solutions():
    for question, answer, rating in SUDOKU_ROWS:
        assert rate(digits(question)) == (digits(answer), rating)
    assert rate(digits(SUDOKU_ROWS[0][1])) == (digits(SUDOKU_ROWS[0][1]), 0)  # a full grid needs no guess
    two, _ = solve([0] * 81, limit=2)
    assert len(two) == 2 and invalid_pairs(np.zeros((2, 81), np.uint8), np.array(two, np.uint8)).size == 0
    clash = digits(SUDOKU_ROWS[0][0])
    clash[1] = clash[0]  # the same digit twice in row 0
    assert solve(clash) == ([], 0)


def test_generated_puzzles_are_minimal_unique_and_hard_enough():
    questions, answers, ratings = generate_sudokus(2, min_rating=10, seed=0)
    assert questions.shape == answers.shape == (2, 81) and (ratings >= 10).all()
    assert invalid_pairs(questions, answers).size == 0
    for question, answer, rating in zip(questions, answers, ratings):
        solutions, guesses = solve(question.tolist(), limit=2)
        assert solutions == [answer.tolist()] and guesses == rating
        for cell in np.flatnonzero(question):  # every given is needed
            fewer = question.copy()
            fewer[cell] = 0
            assert len(solve(fewer.tolist(), limit=2)[0]) == 2
    again = generate_sudokus(2, min_rating=10, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(again, (questions, answers, ratings)))
    assert not np.array_equal(generate_sudokus(2, min_rating=10, seed=1)[0], questions)


def test_generation_stops_at_the_givens_asked_for():
    questions, answers, _ = generate_sudokus(3, min_rating=0, seed=1, givens=35)
    assert ((questions > 0).sum(axis=1) == 35).all() and invalid_pairs(questions, answers).size == 0
    for question, answer in zip(questions, answers):
        assert solve(question.tolist(), limit=2)[0] == [answer.tolist()]  # still a single solution
    with pytest.raises(ValueError, match="givens must be between 17 and 81"):
        generate_sudokus(1, min_rating=0, seed=1, givens=16)


def test_generation_does_not_depend_on_workers():
    one = generate_sudokus(3, min_rating=0, seed=4, stream=1, workers=1)
    two = generate_sudokus(3, min_rating=0, seed=4, stream=1, workers=2)
    assert all(np.array_equal(x, y) for x, y in zip(one, two))


def test_csv_import_and_difficulty_filter(sudoku_csv_dir):
    questions, answers = read_sudoku_csv(sudoku_csv_dir / "train.csv")
    assert [("".join(map(str, q)).replace("0", "."), "".join(map(str, a))) for q, a in zip(questions, answers)] == \
        [row[:2] for row in SUDOKU_ROWS[:3]]
    hard, _ = read_sudoku_csv(sudoku_csv_dir / "train.csv", min_difficulty=35)
    assert np.array_equal(hard, questions[1:2])


def test_build_matches_official_builder(sudoku_csv_dir, tmp_path):
    train = read_sudoku_csv(sudoku_csv_dir / "train.csv", 10)
    test = read_sudoku_csv(sudoku_csv_dir / "test.csv", 10)
    write_sudoku_dataset(tmp_path / "out", train, test, num_aug=2, subsample=2, seed=5)
    assert dataset_digest(tmp_path / "out") == OFFICIAL_DIGEST
    check_dataset(tmp_path / "out", vocab_size=11, seq_len=81)


def test_augmentation_keeps_puzzles_valid(sudoku_csv_dir, tmp_path):
    train = read_sudoku_csv(sudoku_csv_dir / "train.csv")
    test = read_sudoku_csv(sudoku_csv_dir / "test.csv")
    write_sudoku_dataset(tmp_path / "a", train, test, num_aug=3, seed=0)
    split = check_dataset(tmp_path / "a", vocab_size=11, seq_len=81)["train"]
    assert split["group_indices"].tolist() == [0, 4, 8, 12]
    questions, answers = split["inputs"] - 1, split["labels"] - 1
    assert invalid_pairs(questions, answers).size == 0
    assert np.array_equal(questions[::4], train[0]) and np.array_equal(answers[::4], train[1])  # originals first
    for group in range(3):
        copies = questions[4 * group:4 * group + 4]
        assert len({c.tobytes() for c in copies}) == 4  # distinct copies...
        assert len({int((c > 0).sum()) for c in copies}) == 1  # ...with the same number of givens
        assert all(rate(c.tolist())[0] is not None for c in copies)  # ...and still a single solution
    write_sudoku_dataset(tmp_path / "b", train, test, num_aug=3, seed=0)
    write_sudoku_dataset(tmp_path / "c", train, test, num_aug=3, seed=1)
    same = [np.array_equal(np.load(tmp_path / x / "train/all__inputs.npy"), split["inputs"]) for x in "bc"]
    assert same == [True, False]


@pytest.mark.parametrize("row, message", [
    (("7....", SUDOKU_ROWS[0][1], 1), "question must be 81 characters"),
    ((SUDOKU_ROWS[0][0].replace(".", "x", 1), SUDOKU_ROWS[0][1], 1), "question has a cell that is not"),
    ((SUDOKU_ROWS[0][0], SUDOKU_ROWS[0][1].replace("7", ".", 1), 1), "answer has a cell that is not"),
    ((SUDOKU_ROWS[0][0], SUDOKU_ROWS[1][1], 1), "not a valid Sudoku solution"),
    ((SUDOKU_ROWS[0][0], "123456789" * 9, 1), "not a valid Sudoku solution"),
    ((SUDOKU_ROWS[0][0], SUDOKU_ROWS[0][1], "hard"), "rating 'hard' is not an integer"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = write_csv(tmp_path / "bad.csv", [SUDOKU_ROWS[1], row])
    with pytest.raises(DatasetInputError, match=message) as err:
        read_sudoku_csv(path, min_difficulty=0)
    assert str(err.value).startswith(f"{path}:3: ")


def test_bad_files(tmp_path):
    with pytest.raises(DatasetInputError, match="no such file") as err:
        read_sudoku_csv(tmp_path / "missing.csv")
    assert "missing.csv" in str(err.value)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DatasetInputError, match="empty.csv: empty file"):
        read_sudoku_csv(tmp_path / "empty.csv")
    (tmp_path / "fields.csv").write_text("source,question,answer,rating\na,b,c\n")
    with pytest.raises(DatasetInputError, match=r"fields.csv:2: expected 4 fields"):
        read_sudoku_csv(tmp_path / "fields.csv")
    (tmp_path / "binary.csv").write_bytes(b"source,question,answer,rating\n\xff\xfe,1,2,3\n")
    with pytest.raises(DatasetInputError, match=r"binary.csv:2: not UTF-8"):
        read_sudoku_csv(tmp_path / "binary.csv")
    header_only = write_csv(tmp_path / "header.csv", [])
    empty = read_sudoku_csv(header_only)
    with pytest.raises(DatasetInputError, match="training split has no puzzles"):
        write_sudoku_dataset(tmp_path / "out", empty, empty)
    assert not (tmp_path / "out").exists()


def test_writer_refuses_invalid_pairs(sudoku_csv_dir, tmp_path):
    questions, answers = read_sudoku_csv(sudoku_csv_dir / "train.csv")
    answers = answers.copy()
    answers[2, :2] = answers[2, 1::-1]  # two digits swapped: a row still holds 1..9, the columns do not
    with pytest.raises(DatasetInputError, match="train puzzle 2: the answer is not a valid solution"):
        write_sudoku_dataset(tmp_path / "out", (questions, answers), (questions, answers))
    assert not (tmp_path / "out").exists()
