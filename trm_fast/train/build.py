"""Optimizers from a config, as the official create_model builds them (the model and loss head come
from trm_fast.arch.build_model): AdamATan2 on the weights and SignSGD on the puzzle embedding; only
AdamATan2 without a puzzle embedding; only SignSGD with `freeze_weights`. The learning rates are set
by the schedule each step.
"""

from typing import List, Tuple

import torch
from torch import nn

from ..optim import AdamATan2, SignSGD
from .config import TrainConfig


def build_optimizers(config: TrainConfig, model: nn.Module) -> Tuple[List[torch.optim.Optimizer], List[float]]:
    """(optimizers, their base learning rates), in the official order; capturable with `cuda_graph`."""
    adam = (lambda: AdamATan2(model.parameters(), lr=0, weight_decay=config.weight_decay,
                              betas=(config.beta1, config.beta2), capturable=config.cuda_graph))
    if model.config.puzzle_emb_ndim == 0:
        return [adam()], [config.lr]
    sign_sgd = SignSGD(model.puzzle_emb.buffers(), lr=0, weight_decay=config.puzzle_emb_weight_decay)
    if config.freeze_weights:
        return [sign_sgd], [config.puzzle_emb_lr]
    return [sign_sgd, adam()], [config.puzzle_emb_lr, config.lr]
