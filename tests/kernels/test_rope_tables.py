"""kernels.rope_tables.equal_halves: RoPE's tables checked once per table, and again once written."""

import torch
from trm_fast.kernels.rope_tables import equal_halves
from trm_fast.models.layers import RotaryEmbedding


def test_equal_halves_is_kept_per_table_until_it_is_written(monkeypatch):
    compared = []
    equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: compared.append(1) or equal(a, b))
    cos, sin = RotaryEmbedding(16, 5, 10000.0)()
    cos, sin = cos.clone(), sin.clone()
    assert equal_halves(cos, sin) and equal_halves(cos[:], sin[:])  # a fresh view of the same tables: kept
    assert len(compared) == 2
    cos[0, 0] += 1  # written in place: compared again
    assert not equal_halves(cos, sin)
    other = torch.rand(5, 16)  # another table, wherever it lies: compared
    assert not equal_halves(other, sin)
    with torch.inference_mode():  # tables that keep no write counter
        frozen = RotaryEmbedding(16, 5, 10000.0)()
    assert equal_halves(*frozen)
