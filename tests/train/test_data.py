import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from trm_fast.data.dataset import DatasetError, PuzzleSplit
from trm_fast.distributed import Process
from trm_fast.evaluate.runner import share
from trm_fast.train.sampler import TrainSampler

from _trainutil import write_split


def _sampler(data, **kw):
    args = dict(seed=0, global_batch_size=8, epochs_per_iter=1)
    args.update(kw)
    return TrainSampler(PuzzleSplit([data], "train"), **args)


def test_train_batches_take_one_puzzle_per_group_each_epoch(reverse_data):
    data = reverse_data(train_groups=12, puzzles_per_group=3)
    split = PuzzleSplit([data], "train")
    batches = list(_sampler(data, epochs_per_iter=2).iteration())
    assert len(batches) == 3  # 24 groups drawn, 8 per batch
    ids = torch.cat([b["puzzle_identifiers"] for _, b, _ in batches]).numpy()
    groups = Counter((i - 1) // 3 for i in ids)  # puzzle ids 1.. are laid out group by group
    assert set(groups.values()) == {2} and len(groups) == 12
    for _, batch, n in batches:
        assert n == 8 and batch["inputs"].dtype == torch.int32
        rows = [np.flatnonzero(split.sets["all"].puzzle_identifiers == i)[0] for i in batch["puzzle_identifiers"]]
        assert torch.equal(batch["inputs"], torch.from_numpy(split.sets["all"].inputs[rows].astype(np.int32)))


def test_multi_example_puzzles_fill_batches_and_the_last_partial_one_is_dropped(reverse_data):
    data = reverse_data(train_groups=5, puzzles_per_group=1, examples_per_puzzle=3)
    batches = list(_sampler(data).iteration())
    assert len(batches) == 1  # 15 examples: one batch of 8, the rest (7) dropped
    ids = batches[0][1]["puzzle_identifiers"].tolist()
    assert [ids.count(i) for i in dict.fromkeys(ids)] == [3, 3, 2]  # two full puzzles, then what fits


def test_same_seed_same_batches_and_epochs_differ(reverse_data):
    data = reverse_data()
    first = [b["puzzle_identifiers"] for _, b, _ in _sampler(data).iteration()]
    again = [b["puzzle_identifiers"] for _, b, _ in _sampler(data).iteration()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    sampler = _sampler(data)
    list(sampler.iteration())
    second_epoch = [b["puzzle_identifiers"] for _, b, _ in sampler.iteration()]
    assert not all(torch.equal(a, b) for a, b in zip(first, second_epoch))


def test_ranks_take_their_slice_of_the_global_batch(reverse_data):
    data = reverse_data(train_groups=16, puzzles_per_group=2, examples_per_puzzle=2)
    whole = list(_sampler(data).iteration())
    halves = [list(_sampler(data, rank=r, world_size=2).iteration()) for r in range(2)]
    for k, (_, batch, n) in enumerate(whole):
        for key in batch:
            assert torch.equal(batch[key], torch.cat([halves[0][k][1][key], halves[1][k][1][key]]))
        assert halves[0][k][2] == halves[1][k][2] == n


def test_a_restored_position_continues_exactly(reverse_data):
    data = reverse_data(train_groups=20, examples_per_puzzle=2)
    ref = _sampler(data, epochs_per_iter=2)
    reference = [b for _ in range(2) for _, b, _ in ref.iteration()]
    half = len(reference) // 2
    # (batches taken, first iteration run to its end): the position is saved mid-iteration, right after
    # the iteration's last batch (the iteration is re-entered and ends at once), and between iterations
    for stop, exhausted in ((0, False), (3, False), (half, False), (half, True)):
        sampler = _sampler(data, epochs_per_iter=2)
        it = sampler.iteration()
        taken = [next(it)[1] for _ in range(stop)]
        if exhausted:
            assert next(it, None) is None
        state = json.loads(json.dumps(sampler.state_dict()))  # plain data, as in a checkpoint
        resumed = _sampler(data, epochs_per_iter=2)
        resumed.load_state_dict(state)
        for _ in range(1 if exhausted else 2):
            taken += [b for _, b, _ in resumed.iteration()]
        assert len(taken) == len(reference)
        assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(taken, reference))


def test_evaluation_shares_cover_every_example_once():
    for total in (0, 1, 7, 15):
        for world in (1, 2, 3):
            shares = [share(total, Process(rank, world, torch.device("cpu"))) for rank in range(world)]
            assert shares[0][0] == 0 and shares[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))


def test_ignore_label_becomes_minus_100(tmp_path):
    inputs = np.array([[1, 2, 3], [3, 2, 1]])
    write_split(tmp_path / "d" / "train", inputs, np.array([[0, 2, 3], [3, 0, 1]]), [1, 2], [1, 1], [2],
                vocab_size=4, num_ids=3)
    batch = PuzzleSplit([str(tmp_path / "d")], "train").collate("all", np.array([0, 1]), np.array([0, 1]))
    assert batch["labels"].tolist() == [[-100, 2, 3], [3, -100, 1]]


def test_several_directories_merge_as_officially(reverse_data):
    a, b = reverse_data(train_groups=4), reverse_data(train_groups=6, seed=1)
    split = PuzzleSplit([a, b], "train")
    assert list(split.sets) == ["all", "all1"]
    assert split.metadata.total_groups == 10 and split.metadata.num_puzzle_identifiers == 25 + 29


def _corrupt(data, what):
    train = os.path.join(data, "train")
    if what == "missing_dir":
        return os.path.join(data, "nope"), "dataset directory not found"
    if what == "missing_meta":
        os.remove(os.path.join(train, "dataset.json"))
        return data, r"dataset metadata not found: .*train/dataset.json"
    if what == "bad_json":
        open(os.path.join(train, "dataset.json"), "w").write("{")
        return data, r"train/dataset.json is not valid JSON"
    if what == "meta_field":
        meta = json.load(open(os.path.join(train, "dataset.json")))
        meta["vocab_size"] = "six"
        json.dump(meta, open(os.path.join(train, "dataset.json"), "w"))
        return data, r"train/dataset.json: field 'vocab_size' has a bad value 'six'"
    if what == "missing_array":
        os.remove(os.path.join(train, "all__labels.npy"))
        return data, r"dataset file not found: .*all__labels.npy"
    if what == "not_npy":
        open(os.path.join(train, "all__inputs.npy"), "w").write("text")
        return data, r"all__inputs.npy is not a NumPy .npy file"
    if what == "shape":
        np.save(os.path.join(train, "all__labels.npy"), np.ones((3, 8), np.uint8))
        return data, r"all__labels.npy has shape \(3, 8\), expected \(64, seq_len=8\)"
    if what == "indices":
        np.save(os.path.join(train, "all__group_indices.npy"), np.array([0, 5, 3], np.int32))
        return data, r"all__group_indices.npy must rise from 0"
    if what == "ids":
        np.save(os.path.join(train, "all__puzzle_identifiers.npy"), np.full(64, 99, np.int32))
        return data, r"all__puzzle_identifiers.npy holds ids in \[99, 99\], outside \[0, num_puzzle_identifiers=81\)"


@pytest.mark.parametrize("what", ["missing_dir", "missing_meta", "bad_json", "meta_field", "missing_array",
                                  "not_npy", "shape", "indices", "ids"])
def test_bad_dataset_files_are_named(reverse_data, what):
    path, message = _corrupt(reverse_data(), what)
    with pytest.raises((DatasetError, FileNotFoundError), match=message):
        PuzzleSplit([path], "train")


def test_tokens_outside_the_vocabulary_name_file_and_example(reverse_data):
    data = reverse_data()
    inputs = np.load(os.path.join(data, "train", "all__inputs.npy"))
    inputs[5, 2] = 9  # vocab_size is 6
    np.save(os.path.join(data, "train", "all__inputs.npy"), inputs)
    split = PuzzleSplit([data], "train")
    with pytest.raises(DatasetError, match=r"all__inputs.npy: example 5 holds token id 9, outside the vocabulary "
                                           r"\[0, vocab_size=6\)"):
        split.collate("all", np.arange(8))


def test_disagreeing_directories_are_named(reverse_data):
    a, b = reverse_data(), reverse_data(vocab_size=7)
    with pytest.raises(DatasetError, match=r"'vocab_size' is 7, but .*has 6"):
        PuzzleSplit([a, b], "train")
