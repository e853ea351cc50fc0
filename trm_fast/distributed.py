"""torch.distributed as the official pretrain.py uses it, started by torchrun (`LOCAL_RANK` set):
NCCL on CUDA, gloo on the CPU; rank 0's weights broadcast at the start; gradients summed with
all_reduce (the loss is already scaled by 1 / global_batch_size); the sparse embedding's (id, grad)
pairs all-gathered by trm_fast.SignSGD itself."""

import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Process:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start() -> Process:
    """Join the process group when launched by torchrun; pick this process's device."""
    cuda = torch.cuda.is_available()
    if "LOCAL_RANK" not in os.environ:
        return Process(0, 1, torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Process(dist.get_rank(), dist.get_world_size(), device)


def stop():
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: nn.Module):
    """Every rank takes rank 0's parameters and buffers."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t, src=0)


def sum_gradients(module: nn.Module):
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def sum_to_main(values: torch.Tensor, proc: Process) -> torch.Tensor:
    """The sum over ranks, valid on rank 0."""
    if proc.world_size > 1:
        dist.reduce(values, dst=0)
    return values


def gather_to_main(obj: Any, proc: Process) -> Optional[List[Any]]:
    """Every rank's `obj` (picklable, CPU tensors), listed by rank on rank 0; None elsewhere."""
    if proc.world_size == 1:
        return [obj]
    out = [None] * proc.world_size if proc.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out

