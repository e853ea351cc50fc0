"""Adam-atan2 (arXiv 2407.05872) with a = b = 1 and no epsilon, as the `adam-atan2` package that the
official training imports. Per parameter, at step t:

    p <- p * (1 - lr * wd)                                  (decoupled weight decay)
    m <- lerp(m, g, 1 - beta1);  v <- lerp(v, g^2, 1 - beta2)
    p <- p - lr / (1 - beta1^t) * atan2(m, sqrt(v) / sqrt(1 - beta2^t))

atan2 bounds every update by lr * pi / 2 and needs no epsilon. State m, v is fp32; bf16/fp16 params are
updated in fp32 and rounded back. Each step is one multi-tensor (torch._foreach_*) pass per device and dtype
(on the CPU, big tensors one by one: see step), with the same ops in the same order as a per-parameter loop.

capturable=False: the step counter is a CPU tensor and the bias corrections are Python floats.
capturable=True: the step counter lives on the param's device, the bias corrections are device tensors and
`lr` may be a 0-dim tensor on that device, so step() never reads device memory from the host and a CUDA
graph can replay it; write each step's lr into that tensor (`group["lr"].fill_(lr)`) before the replay.
"""

import math
from collections import defaultdict

import torch
from torch.optim import Optimizer

_CPU_ALONE_NUMEL = 1 << 16  # a CPU param above this many elements is updated on its own (see step)


class AdamATan2(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), weight_decay: float = 1e-2, capturable: bool = False):
        if torch.is_tensor(lr) and (lr.numel() != 1 or not capturable):
            raise ValueError(f"AdamATan2: lr as a tensor must hold one number and needs capturable=True, got shape "
                             f"{tuple(lr.shape)} with capturable={capturable}")
        if not 0.0 <= lr:
            raise ValueError(f"AdamATan2: lr must be >= 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamATan2: betas must be two numbers in [0, 1), got {betas}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"AdamATan2: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, capturable=capturable))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            capturable = group["capturable"]
            # Params of one device, dtype and (on the host path) step number share one pass; the step is in the
            # key so that the host path's bias corrections stay single floats. The CPU has no multi-tensor
            # kernels (_foreach_* loops over the tensors there), so a pass over all params would only trade
            # cache locality for fewer Python calls: there each big tensor gets a pass of its own.
            buckets = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if capturable else "cpu")
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                t = None if capturable else state["step"].item() + 1  # a CPU tensor: no device sync
                alone = p.device.type == "cpu" and p.numel() > _CPU_ALONE_NUMEL
                buckets[(p.device, p.dtype, t, id(p) if alone else None)].append(p)
            for (device, _, t, _), params in buckets.items():
                self._update(group, params, device, t)
        return loss

    def _update(self, group, params, device, t):
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        if torch.is_tensor(lr) and (t is not None or lr.device != device):
            raise ValueError(f"AdamATan2: lr as a tensor needs capturable=True and the params' device {device}, "
                             f"got capturable={group['capturable']} and lr on {lr.device}")
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        ms, vs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_add_(steps, 1.0)
        if t is None:
            # Device tensors throughout: 1 - beta^t per param, then -lr / (1 - beta1^t) and sqrt(1 - beta2^t).
            step_size = torch._foreach_pow(beta1, steps)
            torch._foreach_neg_(step_size)
            torch._foreach_add_(step_size, 1.0)
            torch._foreach_reciprocal_(step_size)
            torch._foreach_mul_(step_size, -lr)
            bc2_sqrt = torch._foreach_pow(beta2, steps)
            torch._foreach_neg_(bc2_sqrt)
            torch._foreach_add_(bc2_sqrt, 1.0)
            torch._foreach_sqrt_(bc2_sqrt)
        else:
            step_size, bc2_sqrt = -lr / (1 - beta1**t), math.sqrt(1 - beta2**t)
        grads = [p.grad.to(torch.float32) for p in params]
        p32s = [p.to(torch.float32) for p in params]  # the params themselves when fp32
        if wd != 0:
            torch._foreach_mul_(p32s, 1 - lr * wd)
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1 - beta2)
        updates = torch._foreach_sqrt(vs)
        torch._foreach_div_(updates, bc2_sqrt)
        # torch (up to 2.13 at least) has no _foreach_atan2: one kernel per tensor, written over sqrt(v_hat)
        for m, u in zip(ms, updates):
            torch.atan2(m, u, out=u)
        if t is None:
            torch._foreach_addcmul_(p32s, updates, step_size)  # p += atan2(...) * (-lr / (1 - beta1^t))
        else:
            torch._foreach_add_(p32s, updates, alpha=step_size)
        if p32s[0] is not params[0]:
            torch._foreach_copy_(params, p32s)

    def load_state_dict(self, state_dict):
        # Optimizer.load_state_dict casts every state tensor but "step" to its param's dtype and takes the saved
        # groups' settings. Here the moments stay fp32, `capturable` stays the constructor's (it says how this
        # optimizer runs, not where training stands), and a tensor lr stays the same tensor (a captured graph
        # reads it), taking the saved value. Checkpoints from before `capturable` existed load the same way.
        kept = [(g["capturable"], g["lr"]) for g in self.param_groups]
        saved_ids = (i for g in state_dict["param_groups"] for i in g["params"])
        id_map = dict(zip(saved_ids, ((p, g["capturable"]) for g in self.param_groups for p in g["params"])))
        super().load_state_dict(state_dict)
        for group, (capturable, lr) in zip(self.param_groups, kept):
            group["capturable"] = capturable
            if torch.is_tensor(lr):
                lr.copy_(torch.as_tensor(group["lr"]))
                group["lr"] = lr
            else:
                group["lr"] = float(group["lr"])
        for i, (p, capturable) in id_map.items():
            saved = state_dict["state"].get(i)
            if saved is None:
                continue
            state = self.state[p]
            # a copy: stepping must not count up the caller's checkpoint
            step = torch.as_tensor(saved["step"], dtype=torch.float32)
            state["step"] = step.to(p.device if capturable else "cpu", copy=True)
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = saved[key].to(device=p.device, dtype=torch.float32)
