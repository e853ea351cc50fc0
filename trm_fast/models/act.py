"""Adaptive computation time (ACT) around a recursive core, shared by TRM and HRM.

One `forward(carry, batch)` is one supervision step: halted rows are reset to the initial latents
and take the batch's data, the core runs once, and each row halts when it reaches halt_max_steps
or, in training, when its Q head says so (with exploration). Evaluation always runs halt_max_steps
steps, so a batch halts together.
"""

import dataclasses
from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import resolve_backend
from . import batch_checks
from .layers import CastedEmbedding, CastedLinear, RotaryEmbedding, trunc_normal_init_
from .sparse_embedding import CastedSparseEmbedding


@dataclass
class InnerCarry:
    z_H: torch.Tensor  # (B, P + S, D): the answer latent y
    z_L: torch.Tensor  # (B, P + S, D): the reasoning latent z


@dataclass
class Carry:
    inner_carry: InnerCarry
    steps: torch.Tensor  # (B,) int32: supervision steps taken by the row's current puzzle
    halted: torch.Tensor  # (B,) bool: the row takes a new puzzle at the next step
    current_data: Dict[str, torch.Tensor]

    def clone(self) -> "Carry":
        """A copy in new memory (a carry in a CUDA graph's pool is overwritten by its next replay)."""
        return Carry(InnerCarry(self.inner_carry.z_H.clone(), self.inner_carry.z_L.clone()), self.steps.clone(),
                     self.halted.clone(), {k: v.clone() for k, v in self.current_data.items()})

    def copy_(self, other: "Carry") -> "Carry":
        """`other`'s values into this carry's tensors, in place (a captured graph reads fixed memory)."""
        self.inner_carry.z_H.copy_(other.inner_carry.z_H)
        self.inner_carry.z_L.copy_(other.inner_carry.z_L)
        self.steps.copy_(other.steps)
        self.halted.copy_(other.halted)
        for k, v in other.current_data.items():
            self.current_data[k].copy_(v)
        return self


# The ACT rules, shared by ACTModel.forward and trm_fast.Engine: one place each.

def restart_steps(halted: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Step counters (B,) int32 after halted rows take a new puzzle: 0 there, unchanged elsewhere."""
    return torch.where(halted, 0, steps)


def halt_margin(q_halt: torch.Tensor, q_continue: torch.Tensor, learns_q_continue: bool) -> torch.Tensor:
    """(B,) how far the Q head is past its halting point: Q-halt, or Q-halt - Q-continue for a model that
    learns Q-continue. The model says halt where it is > 0 (> halt_threshold in trm_fast.Engine)."""
    return q_halt - q_continue if learns_q_continue else q_halt


def wants_to_halt(q_halt: torch.Tensor, q_continue: torch.Tensor, learns_q_continue: bool) -> torch.Tensor:
    """The model's own halting decision (B,) bool, as training and the official code take it."""
    return halt_margin(q_halt, q_continue, learns_q_continue) > 0


def q_continue_target(is_last_step: torch.Tensor, next_q_halt: torch.Tensor, next_q_continue: torch.Tensor):
    """The Q-continue target: sigmoid of the next step's best Q value (its Q-halt at the last step)."""
    return torch.sigmoid(torch.where(is_last_step, next_q_halt, torch.maximum(next_q_halt, next_q_continue)))


class RecursiveCore(nn.Module):
    """Input embedding, output heads and initial latents; subclasses add the levels and `forward`."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.forward_dtype = getattr(torch, config.forward_dtype)
        self.puzzle_emb_len = config.resolved_puzzle_emb_len
        self.embed_scale = config.hidden_size**0.5
        # Construction order matches the official classes, so one seed gives the same weights.
        self.embed_tokens = CastedEmbedding(config.vocab_size, config.hidden_size, 1 / self.embed_scale, self.forward_dtype)
        self.lm_head = CastedLinear(config.hidden_size, config.vocab_size, bias=False)
        self.q_head = CastedLinear(config.hidden_size, 2, bias=True)
        if config.puzzle_emb_ndim > 0:
            self.puzzle_emb = CastedSparseEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim,
                                                    config.batch_size, init_std=0, cast_to=self.forward_dtype)
        if config.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(config.hidden_size // config.num_heads, config.full_seq_len, config.rope_theta)
        elif config.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(config.full_seq_len, config.hidden_size, 1 / self.embed_scale, self.forward_dtype)

    def init_latents_and_q_head(self):
        """Initial latents (truncated normal, std 1), and a Q head that starts near 'continue'."""
        d, dtype = self.config.hidden_size, self.forward_dtype
        self.H_init = nn.Buffer(trunc_normal_init_(torch.empty(d, dtype=dtype), std=1))
        self.L_init = nn.Buffer(trunc_normal_init_(torch.empty(d, dtype=dtype), std=1))
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5)

    def cos_sin(self):
        return self.rotary_emb() if self.config.pos_encodings == "rope" else None

    def input_embeddings(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """x: (B, P + S, D) = sqrt(D) * [puzzle embedding positions | token embeddings] (+ positions)."""
        cfg = self.config
        x = self.embed_tokens(inputs.to(torch.int32))
        if cfg.puzzle_emb_ndim > 0:
            p = self.puzzle_emb(puzzle_ids)
            p = F.pad(p, (0, self.puzzle_emb_len * cfg.hidden_size - p.shape[-1]))
            x = torch.cat((p.view(-1, self.puzzle_emb_len, cfg.hidden_size), x), dim=-2)
        if cfg.pos_encodings == "learned":
            x = 0.707106781 * (x + self.embed_pos.embedding_weight.to(self.forward_dtype))  # keeps the variance
        return self.embed_scale * x

    def empty_carry(self, batch_size: int, device) -> InnerCarry:
        shape = (batch_size, self.config.full_seq_len, self.config.hidden_size)
        return InnerCarry(torch.empty(shape, dtype=self.forward_dtype, device=device),
                          torch.empty(shape, dtype=self.forward_dtype, device=device))

    def reset_carry(self, reset: torch.Tensor, carry: InnerCarry) -> InnerCarry:
        reset = reset.view(-1, 1, 1)
        return InnerCarry(torch.where(reset, self.H_init, carry.z_H), torch.where(reset, self.L_init, carry.z_L))

    def outputs(self, z_H: torch.Tensor, z_L: torch.Tensor):
        """Detached carry, logits (B, S, V) without the puzzle positions, Q logits read at position 0."""
        logits = self.lm_head(z_H)[:, self.puzzle_emb_len:]
        q = self.q_head(z_H[:, 0]).to(torch.float32)
        return InnerCarry(z_H.detach(), z_L.detach()), logits, (q[..., 0], q[..., 1])


class ACTModel(nn.Module):
    """The ACT wrapper; subclasses set `config_class`, `core_class` and `learns_q_continue`."""

    config_class = None
    core_class = None

    def __init__(self, config_dict: dict):
        super().__init__()
        config = self.config_class.from_dict(config_dict)
        self.config = dataclasses.replace(config, backend=resolve_backend(config.backend))
        self.inner = self.core_class(self.config)
        self._check_values = batch_checks.ValueChecker()

    @property
    def learns_q_continue(self) -> bool:
        return not self.config.no_ACT_continue

    @property
    def puzzle_emb(self):
        return self.inner.puzzle_emb

    def initial_carry(self, batch: Dict[str, torch.Tensor]) -> Carry:
        """A carry with every row halted, so the first step takes the batch; on the batch's device."""
        inputs = batch["inputs"]
        b, device = inputs.shape[0], inputs.device
        return Carry(
            inner_carry=self.inner.empty_carry(b, device),
            steps=torch.zeros(b, dtype=torch.int32, device=device),
            halted=torch.ones(b, dtype=torch.bool, device=device),
            current_data={k: torch.empty_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: Carry, batch: Dict[str, torch.Tensor]):
        cfg = self.config
        batch_checks.check_structure(cfg, carry, batch, self.inner.H_init.device, self.training)
        self._check_values(cfg, batch)

        # Halted rows restart from the initial latents on the batch's puzzle.
        inner_carry = self.inner.reset_carry(carry.halted, carry.inner_carry)
        steps = restart_steps(carry.halted, carry.steps)
        data = {k: torch.where(carry.halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
                for k, v in carry.current_data.items()}

        inner_carry, logits, (q_halt, q_continue) = self.inner(inner_carry, data)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue}

        with torch.no_grad():
            steps = steps + 1
            is_last_step = steps >= cfg.halt_max_steps
            halted = is_last_step
            if self.training and cfg.halt_max_steps > 1:
                halted = halted | wants_to_halt(q_halt, q_continue, self.learns_q_continue)
                # Exploration: some rows must run a random minimum number of steps.
                explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
                min_steps = explore * torch.randint_like(steps, low=2, high=cfg.halt_max_steps + 1)
                halted = halted & (steps >= min_steps)
                if self.learns_q_continue:
                    # Q-learning target from one more step (no replay buffer: the batch is many envs).
                    outputs["target_q_continue"] = q_continue_target(is_last_step, *self.inner(inner_carry, data)[-1])

        return Carry(inner_carry, steps, halted, data), outputs
