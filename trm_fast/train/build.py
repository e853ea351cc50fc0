"""Model, loss head and optimizers from a config and the dataset's metadata, as the official
create_model builds them.

The model config is the arch fields plus batch_size = global_batch_size / world_size, vocab_size,
seq_len and num_puzzle_identifiers from the training metadata, and causal = False. Optimizers:
AdamATan2 on the weights and SignSGD on the puzzle embedding; only AdamATan2 without a puzzle
embedding; only SignSGD with `freeze_weights`. The learning rates are set by the schedule each step.
"""

from typing import List, Tuple

import torch
from torch import nn

from ..models import ACTLossHead, HRM, TRM
from ..optim import AdamATan2, SignSGD
from .config import TrainConfig, model_kind


def model_config(arch: dict, metadata, batch_size: int, device: torch.device) -> dict:
    cfg = {k: v for k, v in arch.items() if k not in ("name", "loss")}
    if "backend" not in cfg and device.type == "cpu":
        # No fused kernel runs on the CPU: say so once here instead of one fallback warning per op.
        cfg["backend"] = "reference"
    cfg.update(batch_size=batch_size, vocab_size=metadata.vocab_size, seq_len=metadata.seq_len,
               num_puzzle_identifiers=metadata.num_puzzle_identifiers, causal=False)
    return cfg


def build_model(arch: dict, metadata, batch_size: int, device: torch.device) -> Tuple[ACTLossHead, nn.Module]:
    """(loss head, model), created on `device` so that initialisation draws from its generator."""
    cls = TRM if model_kind(arch["name"]) == "trm" else HRM
    with torch.device(device):
        model = cls(model_config(arch, metadata, batch_size, device))
        head = ACTLossHead(model, arch["loss"]["loss_type"])
    return head, model


def build_optimizers(config: TrainConfig, model: nn.Module) -> Tuple[List[torch.optim.Optimizer], List[float]]:
    """(optimizers, their base learning rates), in the official order."""
    adam = (lambda: AdamATan2(model.parameters(), lr=0, weight_decay=config.weight_decay,
                              betas=(config.beta1, config.beta2)))
    if model.config.puzzle_emb_ndim == 0:
        return [adam()], [config.lr]
    sign_sgd = SignSGD(model.puzzle_emb.buffers(), lr=0, weight_decay=config.puzzle_emb_weight_decay)
    if config.freeze_weights:
        return [sign_sgd], [config.puzzle_emb_lr]
    return [sign_sgd, adam()], [config.puzzle_emb_lr, config.lr]
