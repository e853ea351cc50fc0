"""Per-puzzle embedding trained sparsely: only the rows of the current batch get a gradient.

The table `weights` (num_puzzles x dim, fp32) is a persistent buffer, not a parameter, so AdamATan2
never sees it. In training, the batch's rows are copied into `local_weights` (batch x dim, requires
grad) and their ids into `local_ids`; `trm_fast.SignSGD` (or the official
CastedSparseEmbeddingSignSGD_Distributed, given this module's three buffers) then updates the rows.
Keep any other state off this module: the official optimizer asserts exactly these three buffers.
"""

import torch
from torch import nn

from .layers import trunc_normal_init_


class CastedSparseEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, batch_size: int, init_std: float,
                 cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.weights = nn.Buffer(trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))
        self.local_weights = nn.Buffer(torch.zeros(batch_size, embedding_dim, requires_grad=True), persistent=False)
        self.local_ids = nn.Buffer(torch.zeros(batch_size, dtype=torch.int32), persistent=False)

    def _apply(self, fn, recurse=True):
        # Moving a buffer that requires grad (model.to("cuda")) yields a non-leaf copy, which no
        # optimizer takes; keep local_weights a leaf that requires grad wherever the module goes.
        super()._apply(fn, recurse)
        if not self.local_weights.is_leaf:
            self.local_weights = self.local_weights.detach().requires_grad_(True)
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.weights[ids].to(self.cast_to)
        with torch.no_grad():
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.cast_to)
