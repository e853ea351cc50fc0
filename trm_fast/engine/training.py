"""How a training step's forward runs: the loss head compiled on a GPU, as the official pretrain.py does
(torch.compile, default mode, static shapes), eager on a CPU, where compiling costs more than it saves on
the short runs made there. One place for this rule: the trainer and `trm-fast bench` both take it."""

from typing import Optional

import torch


def training_forward(head, device, compile: Optional[bool] = None):
    """`head` (a trm_fast.ACTLossHead), or its compiled twin sharing the same parameters, to call as
    `fn(return_keys=..., carry=..., batch=...)`. `compile`: None chooses by device."""
    if compile is None:
        compile = torch.device(device).type == "cuda"
    return torch.compile(head, dynamic=False) if compile else head
