"""Adam-atan2 (arXiv 2407.05872) with a = b = 1 and no epsilon, as the `adam-atan2` package that the
official training imports. Per parameter, at step t:

    p <- p * (1 - lr * wd)                                  (decoupled weight decay)
    m <- lerp(m, g, 1 - beta1);  v <- lerp(v, g^2, 1 - beta2)
    p <- p - lr / (1 - beta1^t) * atan2(m, sqrt(v) / sqrt(1 - beta2^t))

atan2 bounds every update by lr * pi / 2 and needs no epsilon. State m, v is fp32.
"""

import math

import torch
from torch.optim import Optimizer


class AdamATan2(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), weight_decay: float = 1e-2):
        if not 0.0 <= lr:
            raise ValueError(f"AdamATan2: lr must be >= 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamATan2: betas must be two numbers in [0, 1), got {betas}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"AdamATan2: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"].item()  # a CPU tensor: no device sync
                m, v = state["exp_avg"], state["exp_avg_sq"]
                g = p.grad.to(torch.float32)
                p32 = p.to(torch.float32)  # p itself when p is fp32
                p32.mul_(1 - lr * wd)
                m.lerp_(g, 1 - beta1)
                v.lerp_(g.square(), 1 - beta2)
                p32.add_(torch.atan2(m, v.sqrt() / math.sqrt(1 - beta2**t)), alpha=-lr / (1 - beta1**t))
                if p32 is not p:
                    p.copy_(p32)
        return loss
