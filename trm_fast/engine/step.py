"""The model's part of one ACT step on the engine's rows, written in place: what the drop-in
ACTModel.forward does in evaluation, through the same rules (trm_fast.models.act), on static tensors.

This is the piece torch.compile sees on a GPU: its shapes never change for a batch size, and it knows
nothing of the queue, so one compilation serves every call of `Engine.solve`.
"""

from torch import nn

from ..models.act import InnerCarry, halt_margin, restart_steps


class ModelStep(nn.Module):
    """forward(rows' tensors) -> (logits, Q-halt logits, halt margin: the model says halt where it is > 0);
    the latents and step counters are updated in place."""

    def __init__(self, core: nn.Module, learns_q_continue: bool):
        super().__init__()
        self.core = core
        self.learns_q_continue = learns_q_continue

    def forward(self, z_H, z_L, inputs, puzzle_identifiers, steps, halted):
        carry = self.core.reset_carry(halted, InnerCarry(z_H, z_L))  # halted rows restart
        carry, logits, (q_halt, q_continue) = self.core(carry, {"inputs": inputs,
                                                                "puzzle_identifiers": puzzle_identifiers})
        z_H.copy_(carry.z_H)
        z_L.copy_(carry.z_L)
        steps.copy_(restart_steps(halted, steps) + 1)
        return logits, q_halt, halt_margin(q_halt, q_continue, self.learns_q_continue)
