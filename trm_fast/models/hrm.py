"""Hierarchical Reasoning Model, drop-in for the official HierarchicalReasoningModel_ACTV1.

Two networks: a low level f_L (L_layers blocks) and a high level f_H (H_layers blocks).
One supervision step, with only the very last L and H updates carrying gradients:

    repeat H_cycles times:
        repeat L_cycles times:  z_L <- f_L(z_L, z_H + x)
        z_H <- f_H(z_H, z_L)
    logits = lm_head(z_H), q = q_head(z_H[:, 0])
"""

import torch

from .act import ACTModel, RecursiveCore
from .config import HRMConfig
from .layers import ReasoningModule


class HRMCore(RecursiveCore):
    def __init__(self, config: HRMConfig):
        super().__init__(config)
        self.H_level = ReasoningModule(config, config.H_layers)
        self.L_level = ReasoningModule(config, config.L_layers)
        self.init_latents_and_q_head()

    def forward(self, carry, batch):
        cfg, cos_sin = self.config, self.cos_sin()
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])  # (B, P + S, D)
        z_H, z_L = carry.z_H, carry.z_L
        with torch.no_grad():
            for h in range(cfg.H_cycles):
                last_h = h == cfg.H_cycles - 1
                for l in range(cfg.L_cycles - 1 if last_h else cfg.L_cycles):
                    z_L = self.L_level(z_L, z_H + x, cos_sin)
                if not last_h:
                    z_H = self.H_level(z_H, z_L, cos_sin)
        # one-step gradient: the final L and H updates
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin)
        return self.outputs(z_H, z_L)


class HRM(ACTModel):
    """HRM with ACT halting and Q-continue learning (always on, as officially)."""

    config_class = HRMConfig
    core_class = HRMCore
