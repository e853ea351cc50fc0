"""Every bad batch gets one clear error naming the problem, before any computation."""

import pytest
import trm_fast
from helpers import make_batch, tiny_config


@pytest.fixture
def setup():
    cfg = tiny_config()
    model = trm_fast.TRM(cfg).eval()
    batch = make_batch(cfg)
    return cfg, model, batch, model.initial_carry(batch)


def _run(model, carry, batch):
    return model(carry=carry, batch=batch)


def test_missing_key(setup):
    _, model, batch, carry = setup
    del batch["puzzle_identifiers"]
    with pytest.raises(KeyError, match="missing the key 'puzzle_identifiers'"):
        _run(model, carry, batch)


def test_keys_differ_from_the_carry(setup):
    _, model, batch, carry = setup
    batch["extra"] = batch["labels"].clone()
    with pytest.raises(KeyError, match="differ from the carry's"):
        _run(model, carry, batch)


def test_not_a_dict(setup):
    _, model, batch, carry = setup
    with pytest.raises(TypeError, match="batch must be a dict"):
        _run(model, carry, list(batch.values()))


def test_float_token_ids(setup):
    _, model, batch, carry = setup
    batch["inputs"] = batch["inputs"].float()
    with pytest.raises(TypeError, match=r"batch\['inputs'\] must hold integer ids, got torch.float32"):
        _run(model, carry, batch)


def test_wrong_sequence_length(setup):
    cfg, model, batch, carry = setup
    batch["inputs"] = batch["inputs"][:, :-1]
    with pytest.raises(ValueError, match=r"batch\['inputs'\] must have shape \(3, 7\) \(seq_len 7\), got \(3, 6\)"):
        _run(model, carry, batch)


def test_batch_size_differs_from_the_carry(setup):
    cfg, model, _, carry = setup
    bigger = make_batch(cfg, batch_size=5)
    with pytest.raises(ValueError, match=r"batch\['inputs'\] has batch size 5, but the carry holds 3 rows"):
        _run(model, carry, bigger)


def test_wrong_device(setup):
    _, model, batch, carry = setup
    batch["labels"] = batch["labels"].to("meta")
    with pytest.raises(ValueError, match=r"batch\['labels'\] is on meta, but the model is on cpu"):
        _run(model, carry, batch)


def test_token_ids_outside_the_vocabulary(setup):
    _, model, batch, carry = setup
    batch["inputs"][1, 2] = 11
    with pytest.raises(ValueError, match=r"batch\['inputs'\] holds token ids in \[0, 11\], outside the vocabulary \[0, 11\)"):
        _run(model, carry, batch)


def test_negative_labels_other_than_ignore(setup):
    _, model, batch, carry = setup
    batch["labels"][0, 0] = -100  # the ignore id is fine
    _run(model, carry, batch)
    batch["labels"][0, 1] = -1
    with pytest.raises(ValueError, match=r"batch\['labels'\] holds ids in \[-1, "):
        _run(model, carry, batch)


def test_puzzle_ids_outside_range(setup):
    _, model, batch, carry = setup
    batch["puzzle_identifiers"][0] = 4
    with pytest.raises(ValueError, match=r"outside \[0, num_puzzle_identifiers=4\)"):
        _run(model, carry, batch)


def test_values_checked_once_per_batch_and_again_after_a_change(setup):
    _, model, batch, carry = setup
    carry, _ = _run(model, carry, batch)
    batch["inputs"][0, 0] = 99  # in place: the tensor's version changes, so it is checked again
    with pytest.raises(ValueError, match="outside the vocabulary"):
        _run(model, carry, batch)


def test_training_batch_must_fill_the_sparse_embedding_buffer():
    cfg = tiny_config()
    model = trm_fast.TRM(cfg).train()
    batch = make_batch(cfg, batch_size=2)
    with pytest.raises(ValueError, match=r"must equal config batch_size \(3\)"):
        model(carry=model.initial_carry(batch), batch=batch)
    model.eval()(carry=model.initial_carry(batch), batch=batch)  # evaluation takes any batch size
