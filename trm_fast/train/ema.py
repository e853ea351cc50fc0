"""Exponential moving average of the weights, used for evaluation (the official EMAHelper).

After every training step, for each trainable parameter:  shadow <- (1 - rate) * param + rate * shadow.
Buffers (the puzzle-embedding table, H_init, L_init) are not averaged: the evaluation copy takes them
from the live model, as the official deep copy does.
"""

from typing import Dict

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, rate: float):
        self.rate = rate
        self.shadow: Dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module):
        names = [name for name, _ in model.named_parameters() if name in self.shadow]
        params = [model.get_parameter(name).detach() for name in names]
        shadows = [self.shadow[name] for name in names]
        # multi-tensor and in place (a replayed CUDA graph reads the same buffers), each op rounding as the
        # per-tensor formula does: rate * shadow + (1 - rate) * param, the sum being commutative
        new = torch._foreach_mul(params, 1.0 - self.rate)
        torch._foreach_mul_(shadows, self.rate)
        torch._foreach_add_(shadows, new)

    @torch.no_grad()
    def write_to(self, target: nn.Module, model: nn.Module) -> nn.Module:
        """`target` (a copy of `model`) takes the averaged weights and `model`'s buffers, in place."""
        for name, p in target.named_parameters():
            p.copy_(self.shadow[name] if name in self.shadow else model.get_parameter(name))
        for name, b in target.named_buffers():
            b.copy_(model.get_buffer(name))
        return target

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: Dict[str, torch.Tensor]):
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"EMA state lacks the parameters {', '.join(missing)}")
        # copies: the averages are updated in place, which must not reach the caller's tensors
        self.shadow = {name: state[name].to(device=p.device, dtype=p.dtype, copy=True) for name, p in self.shadow.items()}
