import pytest
import torch
import trm_fast
from helpers import make_batch, tiny_config


def _pair(**overrides):
    torch.manual_seed(0)
    a = trm_fast.TRM(tiny_config(**overrides))
    torch.manual_seed(1)
    b = trm_fast.TRM(tiny_config(**overrides))
    return a, b


@pytest.mark.parametrize("prefix", ["", "model.", "_orig_mod.model."])
def test_loads_official_prefixes_from_file(tmp_path, prefix):
    src, dst = _pair()
    path = tmp_path / "step_100"
    torch.save({prefix + k: v for k, v in src.state_dict().items()}, path)
    trm_fast.load_checkpoint(path, dst)
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    batch = make_batch(tiny_config())
    out_a = src.eval()(carry=src.initial_carry(batch), batch=batch)[1]["logits"]
    out_b = dst.eval()(carry=dst.initial_carry(batch), batch=batch)[1]["logits"]
    assert torch.equal(out_a, out_b)


def test_loads_into_a_loss_head_and_both_ways_strictly():
    src, dst = _pair()
    head = trm_fast.ACTLossHead(dst, "stablemax_cross_entropy")
    trm_fast.load_checkpoint(head.state_dict(), trm_fast.ACTLossHead(src, "stablemax_cross_entropy"))
    dst.load_state_dict(src.state_dict(), strict=True)
    src.load_state_dict(dst.state_dict(), strict=True)


def test_missing_extra_and_misshaped_keys_are_named():
    src, dst = _pair()
    state = src.state_dict()
    del state["inner.lm_head.weight"]
    state["inner.unknown"] = torch.zeros(1)
    state["inner.q_head.bias"] = torch.zeros(3)
    with pytest.raises(ValueError) as err:
        trm_fast.load_checkpoint(state, dst)
    msg = str(err.value)
    assert "missing keys: inner.lm_head.weight" in msg and "unexpected keys: inner.unknown" in msg
    assert "inner.q_head.bias: checkpoint (3,), model (2,)" in msg


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not a PyTorch checkpoint"):
        trm_fast.load_checkpoint(text, trm_fast.TRM(tiny_config()))
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(ValueError, match="list.pt is not a model checkpoint"):
        trm_fast.load_checkpoint(listed, trm_fast.TRM(tiny_config()))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        trm_fast.load_checkpoint(tmp_path / "nope.pt", trm_fast.TRM(tiny_config()))


def test_puzzle_embedding_of_another_size():
    src = trm_fast.TRM(tiny_config(num_puzzle_identifiers=7))
    with torch.no_grad():
        src.inner.puzzle_emb.weights.copy_(torch.randn(7, 16))
    dst = trm_fast.TRM(tiny_config(num_puzzle_identifiers=3))
    with pytest.raises(ValueError, match=r"'inner.puzzle_emb.weights' has shape \(7, 16\), the model expects \(3, 16\)"):
        trm_fast.load_checkpoint(src.state_dict(), dst)
    trm_fast.load_checkpoint(src.state_dict(), dst, reset_puzzle_emb=True)
    mean = src.inner.puzzle_emb.weights.mean(0)
    torch.testing.assert_close(dst.inner.puzzle_emb.weights, mean.expand(3, 16))
