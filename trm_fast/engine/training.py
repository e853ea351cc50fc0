"""How a training step's forward runs: the loss head compiled on a GPU, as the official pretrain.py does
(torch.compile, default mode, static shapes), eager on a CPU, where compiling costs more than it saves on
the short runs made there. One place for this rule: the trainer and `trm-fast bench` both take it.

A model built with `recompute: true` whose reasoning modules checkpoint their calls (off a GPU or on the
reference ops: ReasoningModule.checkpoints; on a GPU its ops recompute inside the layers instead, and the
whole head compiles) is compiled block by block: compiled whole, the backward is one graph that recomputes
every checkpointed call before its first gradient, which holds all their activations at once (17.9 of 18.0
GiB for sudoku_attn at batch 768 on an H200, bench/results/2026-11-29_h200_3b3855d_memory.jsonl); eager
checkpoints around compiled blocks recompute one module call at a time."""

from typing import Optional

import torch

from ..models.layers import Block, ReasoningModule


def checkpoints_calls(module, device) -> bool:
    """Whether `module` (a model or its loss head) checkpoints whole reasoning-module calls on `device`."""
    return any(isinstance(m, ReasoningModule) and m.checkpoints(device) for m in module.modules())


def training_forward(head, device, compile: Optional[bool] = None):
    """`head` (a trm_fast.ACTLossHead), or its compiled twin sharing the same parameters, to call as
    `fn(return_keys=..., carry=..., batch=...)`. `compile`: None chooses by device. With recompute, the
    model's blocks are compiled in place and `head` itself is returned."""
    if compile is None:
        compile = torch.device(device).type == "cuda"
    if not compile:
        return head
    if checkpoints_calls(head, device):
        for module in head.modules():
            if isinstance(module, Block):
                module.compile(dynamic=False)
        return head
    return torch.compile(head, dynamic=False)
