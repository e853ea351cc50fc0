"""The engine's copy of a model's core: the weights read once, cast to the compute dtype.

The drop-in model keeps fp32 weights and casts each one to the activation dtype at every use, as the
official code does: 42 casts of every layer weight per ACT step. The snapshot holds them already cast
(rounding once, before, gives the same numbers as rounding at each use), without gradients, on the
engine's device. Non-persistent buffers (the RoPE tables) are copied too, so the snapshot computes
exactly what the model computes. `read_weights` refreshes it in place: tensors keep their addresses, so
captured CUDA graphs stay valid.
"""

import dataclasses
from typing import Dict, Iterator, Tuple

import torch
from torch import nn

# Per-batch training state of the sparse puzzle embedding: not weights.
_TRAINING_STATE = ("puzzle_emb.local_weights", "puzzle_emb.local_ids")


def _tensors(core: nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    """Every parameter and buffer of a core, by name, without the embedding's training state."""
    for name, t in (*core.named_parameters(), *core.named_buffers()):
        if name not in _TRAINING_STATE:
            yield name, t


def shapes(core: nn.Module) -> Dict[str, Tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in _tensors(core)}


def check_same_shapes(expected: Dict[str, Tuple[int, ...]], source: nn.Module):
    """ValueError naming the first tensor whose shape differs between the snapshot and `source`'s core."""
    found = shapes(source.inner)
    for name in sorted(set(expected) | set(found)):
        if expected.get(name) != found.get(name):
            got, want = found.get(name, "missing"), expected.get(name, "absent from the engine")
            raise ValueError(f"trm_fast.Engine: the model's inner.{name} is {got}, but the engine was built for "
                             f"{want}; the model changed shape since: build a new trm_fast.Engine")


def inference_core(model: nn.Module, device: torch.device, dtype: torch.dtype, backend: str) -> nn.Module:
    """A fresh core of `model`'s class computing in `dtype` with `backend`'s ops on `device`, holding
    `model`'s weights."""
    config = dataclasses.replace(model.config, forward_dtype=str(dtype).removeprefix("torch."), backend=backend)
    with torch.device(device):
        core = type(model.inner)(config)
    core.requires_grad_(False).eval()
    for name, t in _tensors(core):
        if isinstance(t, nn.Parameter) or name == "puzzle_emb.weights":
            t.data = t.data.to(dtype)  # weights in the compute dtype; other buffers (RoPE) as the model has them
    read_weights(core, model.inner)
    return core


@torch.no_grad()
def read_weights(core: nn.Module, source: nn.Module):
    """Copy `source`'s weights into `core` in place (cast to each tensor's dtype)."""
    theirs = dict(_tensors(source))
    for name, t in _tensors(core):
        t.copy_(theirs[name])
