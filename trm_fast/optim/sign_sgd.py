"""Sign-SGD with decoupled weight decay for the sparse puzzle embedding.

Each step: gather the batch's (id, grad) pairs from every rank, sum the gradients per unique id,
then on those rows only:  w <- w * (1 - lr * wd) - lr * sign(grad).
(With very sparse gradients Adam behaves like sign-SGD, without needing per-row moments.)

Takes the embedding's three buffers (`model.puzzle_emb.buffers()`: the table `weights`, the
batch rows `local_weights` with their gradient, the ids `local_ids`), as the official
CastedSparseEmbeddingSignSGD_Distributed does, or the embedding module itself.

step() never reads device memory from the host (no torch.unique: see step), so a CUDA graph can replay
it, the all-gather too where the process group's backend (NCCL) allows capture. `lr` may be a 0-dim
tensor; for a replayed graph to read each step's value, keep it on the table's device and write it in place.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.optim import Optimizer


def _split_buffers(tensors):
    weights = local_weights = local_ids = None
    for t in tensors:
        if t.requires_grad:
            local_weights = t
        elif t.ndim == 1:
            local_ids = t
        elif t.ndim == 2:
            weights = t
    if len(tensors) != 3 or weights is None or local_weights is None or local_ids is None:
        raise ValueError("SignSGD takes the sparse puzzle embedding's three buffers (weights, local_weights "
                         f"with requires_grad, local_ids), e.g. model.puzzle_emb.buffers(); got {len(tensors)} "
                         "tensors of shapes " + ", ".join(str(tuple(t.shape)) for t in tensors))
    return weights, local_weights, local_ids


class SignSGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 1e-2, world_size: int | None = None):
        if not 0.0 <= lr:
            raise ValueError(f"SignSGD: lr must be >= 0, got {lr}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"SignSGD: weight_decay must be >= 0, got {weight_decay}")
        if isinstance(params, nn.Module):
            params = params.buffers()
        params = list(params)
        _split_buffers(params)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, world_size=world_size))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            weights, local_weights, local_ids = _split_buffers(group["params"])
            if local_weights.grad is None:
                continue
            world_size = group["world_size"]
            if world_size is None:
                world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            grads, ids = local_weights.grad, local_ids
            if world_size > 1:
                all_grads = grads.new_empty((world_size * grads.shape[0], grads.shape[1]))
                all_ids = ids.new_empty(world_size * ids.shape[0])
                dist.all_gather_into_tensor(all_grads, grads.contiguous())
                dist.all_gather_into_tensor(all_ids, ids.contiguous())
                grads, ids = all_grads, all_ids
            # Sum the gradients of repeated ids without ids.unique(), whose output size depends on the data
            # (a device-to-host sync, and no CUDA graph): number the runs of equal ids in sorted order, give each
            # row its run's number, and let every row read its id's total. Each row of a repeated id then writes
            # the same new value, so the order of those writes does not matter.
            sorted_ids, order = ids.sort()
            run_start = torch.ones_like(sorted_ids, dtype=torch.bool)
            run_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
            slot = torch.empty_like(order).scatter_(0, order, run_start.cumsum(0) - 1)
            summed = torch.zeros_like(grads).index_add_(0, slot, grads)
            lr, wd = group["lr"], group["weight_decay"]
            rows = weights[ids]
            # sign * lr is exact, so subtracting it rounds as add_(sign, alpha=-lr) does, and lr may be a tensor
            rows.mul_(1.0 - lr * wd).sub_(torch.sign(summed[slot]).mul_(lr))
            weights[ids] = rows
        return loss
