"""The EMA of the weights: the official formula, per tensor, whatever the update's implementation."""

import torch
import trm_fast
from helpers import tiny_config
from trm_fast.train.ema import EMA


def test_update_gives_the_per_tensor_formulas_bits():
    torch.manual_seed(0)
    model = trm_fast.TRM(tiny_config())
    ema, rate = EMA(model, 0.999), 0.999
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        expected = {name: (1.0 - rate) * p.detach() + rate * expected[name] for name, p in model.named_parameters()}
    assert expected.keys() == ema.state_dict().keys()
    for name, value in ema.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_a_loaded_state_is_copied_not_updated_in_place():
    model = trm_fast.TRM(tiny_config())
    ema = EMA(model, 0.5)
    state = {k: v.clone() for k, v in ema.state_dict().items()}
    before = {k: v.clone() for k, v in state.items()}
    ema.load_state_dict(state)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    assert all(torch.equal(state[k], before[k]) for k in state)
