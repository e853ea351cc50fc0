"""Tiny Recursive Model (arXiv 2510.04871), drop-in for the official TinyRecursiveReasoningModel_ACTV1.

One network f (L_layers post-norm blocks) refines two latents: the answer y (z_H) and the
reasoning state z (z_L). One supervision step:

    repeat H_cycles times (all but the last without gradients):
        repeat L_cycles times:  z <- f(z, x + y)     # latent update,  z <- f(x + y + z)
        y <- f(y, z)                                  # answer update,  y <- f(y + z)
    logits = lm_head(y), q = q_head(y[:, 0])

ACT (trm_fast.models.act) repeats supervision steps, carrying (y, z) detached between them.
"""

import torch

from .act import ACTModel, RecursiveCore
from .config import TRMConfig
from .layers import ReasoningModule


class TRMCore(RecursiveCore):
    def __init__(self, config: TRMConfig):
        super().__init__(config)
        self.L_level = ReasoningModule(config, config.L_layers)  # the one network f
        self.init_latents_and_q_head()

    def latent_recursion(self, x, z_H, z_L, cos_sin):
        for _ in range(self.config.L_cycles):
            z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.L_level(z_H, z_L, cos_sin)
        return z_H, z_L

    def forward(self, carry, batch):
        cos_sin = self.cos_sin()
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])  # (B, P + S, D)
        z_H, z_L = carry.z_H, carry.z_L
        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                z_H, z_L = self.latent_recursion(x, z_H, z_L, cos_sin)
        z_H, z_L = self.latent_recursion(x, z_H, z_L, cos_sin)  # only the last cycle carries gradients
        return self.outputs(z_H, z_L)


class TRM(ACTModel):
    """TRM with ACT halting. `TRM(config_dict)`; `forward(carry, batch) -> (carry, outputs)`.

    With `no_ACT_continue: false` the model also learns Q-continue against a one-step-ahead target,
    as HRM does (the official TRM crashes on this setting).
    """

    config_class = TRMConfig
    core_class = TRMCore
